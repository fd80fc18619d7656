// A thin layer over the generated daas.v1 code: mutual TLS, one method per
// call, async iterables for the event streams, DaasError for failures.

import { readFile } from "node:fs/promises";

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import {
  DesktopService,
  SessionState,
  Tool,
  type AuditEntry,
  type Pool,
  type Session,
  type SessionEvent,
} from "./gen/daas/v1/desktop_pb.js";
import { DaasError } from "./errors.js";

/** A state filter: a value, or a name such as "ready" or "SESSION_STATE_READY". */
export type StateLike = SessionState | string;

/** The short name of a state: `stateName(SessionState.READY) === "READY"`. */
export function stateName(state: SessionState): string {
  return SessionState[state] ?? String(state);
}

/** A state from a value or a name; throws RangeError for an unknown name. */
export function parseState(state: StateLike | undefined): SessionState {
  if (state === undefined) {
    return SessionState.UNSPECIFIED;
  }
  if (typeof state !== "string") {
    return state;
  }
  const name = state.trim().toUpperCase().replace(/^SESSION_STATE_/, "");
  const value = (SessionState as unknown as Record<string, unknown>)[name];
  if (typeof value !== "number") {
    const known = Object.keys(SessionState)
      .filter((k) => Number.isNaN(Number(k)) && k !== "UNSPECIFIED")
      .map((k) => k.toLowerCase());
    throw new RangeError(`unknown session state "${state}" (one of: ${known.join(", ")})`);
  }
  return value as SessionState;
}

/** One line for an event, as a person would want it printed. */
export function describe(event: SessionEvent): string {
  switch (event.kind.case) {
    case "stageChange": {
      let line = stateName(event.state);
      if (event.kind.value.message) {
        line += `: ${event.kind.value.message}`;
      }
      const s = event.session;
      if (event.state === SessionState.READY && s) {
        line += ` (RDP ${s.rdpHost}:${s.rdpPort})`;
      }
      if (event.state === SessionState.FAILED && s?.failure) {
        line += ` (${stateName(s.failure.stage)} failed: ${s.failure.reason})`;
      }
      return line;
    }
    case "output": {
      const tool = (Tool[event.kind.value.tool] ?? "tool").toLowerCase();
      return `  [${tool}] ${event.kind.value.text}`;
    }
    case "idleWarning":
      return `warning: ${event.kind.value.reason}`;
    default:
      return stateName(event.state);
  }
}

/**
 * The events of one CreateSession or WatchSession call, as they arrive:
 * `for await (const event of stream)`. The iteration ends after READY,
 * FAILED or DESTROYED; a failed call throws a DaasError from it.
 *
 * The call starts when the stream is made. `cancel()`, or leaving a
 * `for await` loop early, closes it: the server goes on with the session, and
 * `watch()` re-attaches to it. A closed stream yields nothing more.
 */
export class EventStream implements AsyncIterable<SessionEvent> {
  /** The last event received. */
  last: SessionEvent | undefined;
  /** The whole session, from the last event that carried it (the one ending
   * the stream: READY, FAILED or DESTROYED). */
  session: Session | undefined;

  readonly #abort: AbortController;
  readonly #events: AsyncIterator<SessionEvent>;
  #pending: Promise<IteratorResult<SessionEvent>> | undefined;
  #closed = false;

  /** @internal Use DaasClient.createSession() or watch(). */
  constructor(
    start: (signal: AbortSignal) => AsyncIterable<SessionEvent>,
    signal: AbortSignal | undefined,
  ) {
    this.#abort = new AbortController();
    if (signal) {
      if (signal.aborted) {
        this.#abort.abort(signal.reason);
      } else {
        signal.addEventListener("abort", () => this.#abort.abort(signal.reason), { once: true });
      }
    }
    this.#events = start(this.#abort.signal)[Symbol.asyncIterator]();
    // Start the call now (a create begins at once, as in other clients);
    // an error waits for the iteration instead of becoming unhandled.
    this.#pending = this.#events.next();
    this.#pending.catch(() => undefined);
  }

  /** Closes the stream (the session itself is not affected); an iteration
   * under way ends quietly. */
  cancel(): void {
    this.#closed = true;
    this.#abort.abort();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<SessionEvent, void, undefined> {
    try {
      while (!this.#closed) {
        const next = this.#pending ?? this.#events.next();
        this.#pending = undefined;
        const result = await next;
        if (result.done || this.#closed) {
          return;
        }
        const event = result.value;
        this.last = event;
        if (event.session) {
          this.session = event.session;
        }
        yield event;
      }
    } catch (reason) {
      if (this.#closed) {
        return; // the call failed because cancel() closed it
      }
      throw DaasError.from(reason);
    } finally {
      // The stream ended, failed, or the loop was left early: close the call.
      this.cancel();
    }
  }
}

/** What a desktop is for (CreateSessionRequest). */
export interface CreateSessionOptions {
  /** The user the desktop is for; empty or absent: the caller. Only an
   * administrator may name someone else. */
  username?: string;
  /** Optional local login created on the desktop. */
  sessionUser?: string;
  /** Password of `sessionUser` (required with it); sent to the server only,
   * never stored or logged. */
  sessionPassword?: string;
  /** Template name; absent: the server's default. */
  template?: string;
  /** Optional idempotency key (1-64 letters, digits, '.', '_', ':' or '-';
   * e.g. `crypto.randomUUID()`): a create repeated with the same key within
   * 24 hours, e.g. after UNAVAILABLE, makes no new desktop but streams the
   * first one's events from the start. The same key for another user or
   * template is INVALID_ARGUMENT. */
  requestId?: string;
}

/** Which sessions list() and listPages() return. */
export interface ListFilter {
  /** Only this user's; absent: every user the caller may see (a user sees
   * only their own). */
  username?: string;
  /** Only sessions in this state ("ready", SessionState.READY). */
  state?: StateLike;
  /** Sessions per page asked of the server, 1-1000 (default 1000). */
  pageSize?: number;
}

/** Which entries listAudit() and listAuditPages() return. */
export interface AuditFilter {
  /** Only entries whose actor or session owner is this user. */
  username?: string;
  /** Only entries about this session. */
  sessionId?: string;
  /** Only entries at or after this time. */
  since?: Date;
  /** Entries per page asked of the server, 1-1000 (default 1000). */
  pageSize?: number;
}

/** Per-call options. */
export interface CallOptions {
  /** Aborting it closes a stream, or fails a unary call with CANCELLED. */
  signal?: AbortSignal;
}

/** Options of a DaasClient. */
export interface ClientOptions {
  /** Check the server's certificate for this name instead of the endpoint's
   * host (e.g. "localhost" when connecting to an address it does not name). */
  serverName?: string;
  /** Bound (ms) on each unary call (get, list, destroy, the pool and audit calls).
   * None by default: a destroy waits for Terraform. Streams have no deadline. */
  timeoutMs?: number;
}

/** PEM contents (not paths) for mutual TLS. */
export interface PemCredentials {
  /** The CA that signed the server's certificate. */
  ca: string | Buffer;
  /** The caller's client certificate; the server refuses connections without it. */
  cert?: string | Buffer;
  /** The key of `cert`. */
  key?: string | Buffer;
}

function baseUrl(endpoint: string): string {
  const trimmed = endpoint.trim().replace(/\/+$/, "");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed)) {
    if (!trimmed.toLowerCase().startsWith("https://")) {
      throw new RangeError(
        `endpoint "${endpoint}": use host:port or https://host:port (gRPC over mutual TLS)`,
      );
    }
    return trimmed;
  }
  return `https://${trimmed}`;
}

/**
 * A client of daas.v1.DesktopService.
 *
 * ```ts
 * const daas = await DaasClient.fromFiles("https://daas.example.org:50051", "ca.pem", "alice.pem", "alice-key.pem");
 * for await (const event of daas.createSession()) console.log(describe(event));
 * daas.close();
 * ```
 */
export class DaasClient {
  readonly #client: Client<typeof DesktopService>;
  readonly #close: () => void;
  readonly #timeoutMs: number | undefined;
  readonly #endpoint: string;

  /** Wraps any Connect transport (`close` is called by `close()`). */
  constructor(
    transport: Transport,
    options: { timeoutMs?: number; close?: () => void; endpoint?: string } = {},
  ) {
    this.#client = createClient(DesktopService, transport);
    this.#timeoutMs = options.timeoutMs;
    this.#close = options.close ?? (() => undefined);
    this.#endpoint = options.endpoint ?? "";
  }

  /**
   * Connects to `endpoint` (`host:port` or `https://host:port`) with the CA
   * that signed the server's certificate and the caller's client certificate
   * and key (PEM files, e.g. from `daas-server pki`).
   */
  static async fromFiles(
    endpoint: string,
    ca: string,
    cert: string,
    key: string,
    options: ClientOptions = {},
  ): Promise<DaasClient> {
    const [caPem, certPem, keyPem] = await Promise.all([
      readFile(ca),
      readFile(cert),
      readFile(key),
    ]);
    return DaasClient.fromPem(endpoint, { ca: caPem, cert: certPem, key: keyPem }, options);
  }

  /** Like fromFiles(), with the PEM contents. The client keeps no copy of
   * the key: it is handed to Node's TLS. */
  static fromPem(endpoint: string, pem: PemCredentials, options: ClientOptions = {}): DaasClient {
    const url = baseUrl(endpoint);
    const tls: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string } = {
      ca: pem.ca,
    };
    if (pem.cert !== undefined) tls.cert = pem.cert;
    if (pem.key !== undefined) tls.key = pem.key;
    if (options.serverName !== undefined) tls.servername = options.serverName;
    const sessionManager = new Http2SessionManager(url, { pingIntervalMs: 30_000 }, tls);
    const transport = createGrpcTransport({ baseUrl: url, sessionManager });
    const clientOptions: { timeoutMs?: number; close: () => void; endpoint: string } = {
      close: () => sessionManager.abort(),
      endpoint: url,
    };
    if (options.timeoutMs !== undefined) clientOptions.timeoutMs = options.timeoutMs;
    return new DaasClient(transport, clientOptions);
  }

  /**
   * Creates a desktop and returns its live events (the call starts now).
   * The last event is READY (`stream.session` has the RDP endpoint) or
   * FAILED (`stream.session.failure` says where and why).
   */
  createSession(request: CreateSessionOptions = {}, options: CallOptions = {}): EventStream {
    return new EventStream(
      (signal) =>
        this.#client.createSession(
          {
            username: request.username ?? "",
            sessionUser: request.sessionUser ?? "",
            sessionPassword: request.sessionPassword ?? "",
            template: request.template ?? "",
            requestId: request.requestId ?? "",
          },
          { signal },
        ),
      options.signal,
    );
  }

  /** Every event of a session since the first (sequence 1), then live ones
   * until READY, FAILED or DESTROYED. */
  watch(sessionId: string, options: CallOptions = {}): EventStream {
    return new EventStream(
      (signal) => this.#client.watchSession({ sessionId }, { signal }),
      options.signal,
    );
  }

  /** Every matching session, newest first. The server answers a page at a
   * time: this asks for each page in turn. */
  async list(filter: ListFilter = {}, options: CallOptions = {}): Promise<Session[]> {
    const sessions: Session[] = [];
    for await (const page of this.listPages(filter, options)) sessions.push(...page);
    return sessions;
  }

  /** Like list(), one page (at most `pageSize` sessions) at a time: each page
   * is asked for when the iteration reaches it. */
  async *listPages(
    filter: ListFilter = {},
    options: CallOptions = {},
  ): AsyncGenerator<Session[], void, undefined> {
    const request = {
      username: filter.username ?? "",
      state: parseState(filter.state),
      pageSize: filter.pageSize ?? 1000,
      pageToken: "",
    };
    for (;;) {
      const response = await this.#unary(() =>
        this.#client.listSessions(request, this.#callOptions(options)),
      );
      yield response.sessions;
      if (!response.nextPageToken) return;
      request.pageToken = response.nextPageToken;
    }
  }

  /** One session (NOT_FOUND for an unknown id). */
  get(sessionId: string, options: CallOptions = {}): Promise<Session> {
    return this.#unary(() => this.#client.getSession({ sessionId }, this.#callOptions(options)));
  }

  /** Destroys a session's desktop and returns the session, DESTROYED.
   * Idempotent; ABORTED when Terraform failed (destroying again retries). */
  destroy(sessionId: string, options: CallOptions = {}): Promise<Session> {
    return this.#unary(() =>
      this.#client.destroySession({ sessionId }, this.#callOptions(options)),
    );
  }

  /** Every warm pool the server configures, by name, and where each stands
   * (administrators only: PERMISSION_DENIED otherwise). */
  async listPools(options: CallOptions = {}): Promise<Pool[]> {
    const response = await this.#unary(() =>
      this.#client.listPools({}, this.#callOptions(options)),
    );
    return response.pools;
  }

  /** One warm pool (NOT_FOUND for a pool the server does not configure;
   * administrators only: PERMISSION_DENIED otherwise). */
  getPool(name: string, options: CallOptions = {}): Promise<Pool> {
    return this.#unary(() => this.#client.getPool({ name }, this.#callOptions(options)));
  }

  /** The audit trail, newest first: creates, claims, destroys, reaps, agent
   * certificates issued and refused calls, with who, from where and the
   * result (administrators only: PERMISSION_DENIED otherwise). The server
   * answers a page at a time: this asks for each page in turn. */
  async listAudit(filter: AuditFilter = {}, options: CallOptions = {}): Promise<AuditEntry[]> {
    const entries: AuditEntry[] = [];
    for await (const page of this.listAuditPages(filter, options)) entries.push(...page);
    return entries;
  }

  /** Like listAudit(), one page (at most `pageSize` entries) at a time: each
   * page is asked for when the iteration reaches it. */
  async *listAuditPages(
    filter: AuditFilter = {},
    options: CallOptions = {},
  ): AsyncGenerator<AuditEntry[], void, undefined> {
    const request = {
      username: filter.username ?? "",
      sessionId: filter.sessionId ?? "",
      pageSize: filter.pageSize ?? 1000,
      pageToken: "",
      ...(filter.since ? { since: timestampFromDate(filter.since) } : {}),
    };
    for (;;) {
      const response = await this.#unary(() =>
        this.#client.listAudit(request, this.#callOptions(options)),
      );
      yield response.entries;
      if (!response.nextPageToken) return;
      request.pageToken = response.nextPageToken;
    }
  }

  /** Closes the connection (and any open stream). */
  close(): void {
    this.#close();
  }

  /** For logs: the endpoint, never credentials. */
  toString(): string {
    return `DaasClient(${this.#endpoint})`;
  }

  #callOptions(options: CallOptions): { signal?: AbortSignal; timeoutMs?: number } {
    const out: { signal?: AbortSignal; timeoutMs?: number } = {};
    if (options.signal) out.signal = options.signal;
    if (this.#timeoutMs !== undefined) out.timeoutMs = this.#timeoutMs;
    return out;
  }

  async #unary<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (reason) {
      throw DaasError.from(reason);
    }
  }
}
