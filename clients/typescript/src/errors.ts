// Errors of the DaaS API: one class carrying the gRPC status code and the
// typed details of the status (google.rpc.BadRequest, google.rpc.RetryInfo),
// which the server sends in the grpc-status-details-bin trailer and connect
// decodes into ConnectError.details.

import { Code, ConnectError } from "@connectrpc/connect";

import { BadRequestSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

export { Code };

/** OpenSSL's certificate verification failures, as Node names them. */
const TLS_VERIFY_CODES = new Set([
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "CERT_SIGNATURE_FAILURE",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
]);

/** Whether a failure (or one of its causes) is a TLS handshake failure. */
function isTlsFailure(reason: unknown): boolean {
  for (let depth = 0; depth < 5 && reason instanceof Error; depth++) {
    const code = (reason as Error & { code?: unknown }).code;
    if (typeof code === "string" && (/^ERR_(SSL|TLS)_/.test(code) || TLS_VERIFY_CODES.has(code))) {
      return true;
    }
    reason = reason.cause;
  }
  return false;
}

/** gRPC's canonical names, indexed by code ("INVALID_ARGUMENT" for 3). */
const CODE_NAMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

/** The gRPC name of a code: `codeName(Code.NotFound) === "NOT_FOUND"`. */
export function codeName(code: Code): string {
  return CODE_NAMES[code] ?? `CODE_${code}`;
}

/** A bad request field (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
  /** The field's name in the request, e.g. "username". */
  readonly field: string;
  /** What is wrong with it, e.g. "must be at most 20 characters". */
  readonly description: string;
}

/** Seconds of the status's google.rpc.RetryInfo, if it has one. */
function retryInfoSeconds(err: ConnectError): number | undefined {
  for (const info of err.findDetails(RetryInfoSchema)) {
    const delay = info.retryDelay;
    if (delay) {
      const seconds = Number(delay.seconds) + delay.nanos / 1e9;
      return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
    }
  }
  return undefined;
}

/** The retry-after metadata (whole seconds), for servers that send no RetryInfo. */
function retryAfterMetadata(err: ConnectError): number | undefined {
  const value = Number(err.metadata.get("retry-after") ?? Number.NaN);
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

/**
 * A call to the DaaS server failed.
 *
 * `code` is the gRPC status code (compare with `Code.PermissionDenied` et
 * cetera), `rawMessage` the server's explanation, which names the bad field
 * or the refused act. `message` is `"CODE_NAME: rawMessage"`.
 * `retryAfterSeconds` is the server's hint when waiting helps (its
 * google.rpc.RetryInfo, else the retry-after metadata); `fieldViolations`
 * lists the bad request fields (its google.rpc.BadRequest), else is empty.
 *
 * - INVALID_ARGUMENT: a request field is malformed (`fieldViolations` names
 *   it, as does the message).
 * - NOT_FOUND: no session has this id.
 * - PERMISSION_DENIED: e.g. another user's session.
 * - RESOURCE_EXHAUSTED: a limit is reached; `retryAfterSeconds` is set when
 *   waiting helps (not for too many live desktops: destroy one).
 * - ABORTED: Terraform could not destroy the VM; destroying again retries.
 * - UNAVAILABLE: the server cannot be reached, refused the TLS handshake
 *   (no or a bad client certificate) or is shutting down (then with
 *   `retryAfterSeconds`).
 */
export class DaasError extends Error {
  override readonly name = "DaasError";
  readonly code: Code;
  readonly rawMessage: string;
  readonly retryAfterSeconds: number | undefined;
  readonly fieldViolations: readonly FieldViolation[];

  constructor(
    code: Code,
    rawMessage: string,
    options: {
      retryAfterSeconds?: number | undefined;
      fieldViolations?: readonly FieldViolation[] | undefined;
      cause?: unknown;
    } = {},
  ) {
    super(`${codeName(code)}: ${rawMessage}`, { cause: options.cause });
    this.code = code;
    this.rawMessage = rawMessage;
    this.retryAfterSeconds = options.retryAfterSeconds;
    this.fieldViolations = options.fieldViolations ?? [];
  }

  /** The gRPC name of `code`, e.g. "PERMISSION_DENIED". */
  get codeName(): string {
    return codeName(this.code);
  }

  /** A DaasError for anything a call threw. */
  static from(reason: unknown): DaasError {
    if (reason instanceof DaasError) {
      return reason;
    }
    const err = ConnectError.from(reason);
    if ((err.code === Code.Internal || err.code === Code.Unknown) && isTlsFailure(err)) {
      // A refused TLS handshake (no or a bad client certificate, an unknown
      // CA): UNAVAILABLE, as gRPC's own clients report it, not INTERNAL.
      return new DaasError(Code.Unavailable, err.rawMessage, { cause: reason });
    }
    const retryAfterSeconds = retryInfoSeconds(err) ?? retryAfterMetadata(err);
    const fieldViolations = err
      .findDetails(BadRequestSchema)
      .flatMap((bad) => bad.fieldViolations)
      .map(({ field, description }) => ({ field, description }));
    return new DaasError(err.code, err.rawMessage, { retryAfterSeconds, fieldViolations, cause: reason });
  }
}
