// Errors of the DaaS API: one class carrying the gRPC status code.

import { Code, ConnectError } from "@connectrpc/connect";

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

/**
 * A call to the DaaS server failed.
 *
 * `code` is the gRPC status code (compare with `Code.PermissionDenied` et
 * cetera), `rawMessage` the server's explanation, which names the bad field
 * or the refused act. `message` is `"CODE_NAME: rawMessage"`.
 *
 * - INVALID_ARGUMENT: a request field is malformed (the message names it).
 * - NOT_FOUND: no session has this id.
 * - PERMISSION_DENIED: e.g. another user's session.
 * - RESOURCE_EXHAUSTED: a limit is reached; `retryAfterSeconds` is the
 *   server's hint when waiting helps.
 * - ABORTED: Terraform could not destroy the VM; destroying again retries.
 * - UNAVAILABLE: the server cannot be reached, refused the TLS handshake
 *   (no or a bad client certificate) or is shutting down.
 */
export class DaasError extends Error {
  override readonly name = "DaasError";
  readonly code: Code;
  readonly rawMessage: string;
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: Code,
    rawMessage: string,
    options: { retryAfterSeconds?: number | undefined; cause?: unknown } = {},
  ) {
    super(`${codeName(code)}: ${rawMessage}`, { cause: options.cause });
    this.code = code;
    this.rawMessage = rawMessage;
    this.retryAfterSeconds = options.retryAfterSeconds;
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
    let retryAfterSeconds: number | undefined;
    if (err.code === Code.ResourceExhausted) {
      const value = Number(err.metadata.get("retry-after") ?? Number.NaN);
      retryAfterSeconds = Number.isFinite(value) && value >= 0 ? value : undefined;
    }
    return new DaasError(err.code, err.rawMessage, { retryAfterSeconds, cause: reason });
  }
}
