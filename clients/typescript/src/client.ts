// A thin layer over the generated daas.v1 code: mutual TLS, one method per
// call, async iterables for the event streams, DaasError for failures. Given
// several endpoints (replicas of one service), a call that finds one down
// moves on to the next (replicas.ts).

import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";

import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import {
  DesktopService,
  SessionState,
  Tool,
  type AuditEntry,
  type ListTemplatesResponse,
  type Node,
  type Pool,
  type Quota,
  type Schedule,
  type Session,
  type SessionEvent,
  type Snapshot,
} from "./gen/daas/v1/desktop_pb.js";
import { DaasError } from "./errors.js";
import { Replicas, isServerDown, splitEndpoints, type Replica, type Round } from "./replicas.js";

/** Opens a stream on a server: its generated client, the sequence number of
 * the last event already received (0: none), and the stream's signal. */
type Open = (
  client: Client<typeof DesktopService>,
  after: bigint,
  signal: AbortSignal,
) => AsyncIterable<SessionEvent>;

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
 * FAILED or DESTROYED; a failed call throws a DaasError from it. When the
 * server goes away midway, the call is made again on the next server and the
 * iteration goes on after the last event it gave: no event comes twice.
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
  /** The create's idempotency key ("" for a watch). */
  readonly requestId: string;

  readonly #abort: AbortController;
  readonly #open: Open;
  readonly #round: Round;
  #events: AsyncIterator<SessionEvent>;
  #pending: Promise<IteratorResult<SessionEvent>> | undefined;
  #closed = false;

  /** @internal Use DaasClient.createSession() or watch(). */
  constructor(round: Round, open: Open, signal: AbortSignal | undefined, requestId = "") {
    this.#abort = new AbortController();
    if (signal) {
      if (signal.aborted) {
        this.#abort.abort(signal.reason);
      } else {
        signal.addEventListener("abort", () => this.#abort.abort(signal.reason), { once: true });
      }
    }
    this.#round = round;
    this.#open = open;
    this.requestId = requestId;
    this.#events = this.#start();
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
        let result: IteratorResult<SessionEvent>;
        try {
          const next = this.#pending ?? this.#events.next();
          this.#pending = undefined;
          result = await next;
        } catch (reason) {
          if (this.#closed) return; // the call failed because cancel() closed it
          const err = DaasError.from(reason);
          // Aborted by the caller's signal, or the server's own answer.
          if (this.#abort.signal.aborted || !isServerDown(err)) throw err;
          this.#round.failed(err); // throws when every server is down
          this.#events = this.#start();
          continue;
        }
        if (result.done || this.#closed) {
          return;
        }
        this.#round.answered();
        const event = result.value;
        if (this.last && event.sequence <= this.last.sequence) {
          continue; // sent again by the next server
        }
        this.last = event;
        if (event.session) {
          this.session = event.session;
        }
        yield event;
      }
    } finally {
      // The stream ended, failed, or the loop was left early: close the call.
      this.cancel();
    }
  }

  /** The call on the round's server, for the events after the last one. */
  #start(): AsyncIterator<SessionEvent> {
    const after = this.last?.sequence ?? 0n;
    return this.#open(this.#round.client, after, this.#abort.signal)[Symbol.asyncIterator]();
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
  /** One of the template's sizes (`listTemplates()`); absent: its default.
   * An unknown template or size is INVALID_ARGUMENT naming the choices; a
   * template not for the caller's groups PERMISSION_DENIED. */
  size?: string;
  /** The organisation whose quota the desktop counts against; absent: the
   * caller's (a caller in several must name one; one they are not in is
   * PERMISSION_DENIED). A create past a quota is RESOURCE_EXHAUSTED. */
  org?: string;
  /** The create's idempotency key (1-64 letters, digits, '.', '_', ':' or
   * '-'; by default 32 random hex digits, in `stream.requestId`): a create
   * repeated with the same key within 24 hours makes no new desktop but
   * streams the first one's events from the start. The stream does so itself
   * when its server goes away (on the next server, without yielding an event
   * twice); a script may too after UNAVAILABLE. The same key for another user
   * or template is INVALID_ARGUMENT. */
  requestId?: string;
}

/** Which sessions list() and listPages() return. */
export interface ListFilter {
  /** Only this user's; absent: every user the caller may see (a user sees
   * only their own). */
  username?: string;
  /** Only sessions in this state ("ready", SessionState.READY). */
  state?: StateLike;
  /** Only this organisation's (its administrators see its members'
   * sessions this way). */
  org?: string;
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
  /** Only entries about this organisation's sessions and members (its
   * administrators may read these). */
  org?: string;
  /** Entries per page asked of the server, 1-1000 (default 1000). */
  pageSize?: number;
}

/** Whose quota getQuota() returns. */
export interface QuotaOptions {
  /** The organisation; absent: the caller's. */
  org?: string;
  /** The member whose share to return; absent: the caller, or none for an
   * administrator naming `org`. */
  username?: string;
}

/** What addSchedule() adds (AddScheduleRequest). */
export interface AddScheduleOptions {
  /** When the desktop is to be READY, "HH:MM" (24-hour) in `timezone`. */
  at: string;
  /** Which days: "mon-fri", "sat,sun", "mon,wed-fri" or "daily". */
  days: string;
  /** An IANA time zone ("Europe/Paris"); absent: the server's, which the
   * answer names. */
  timezone?: string;
  /** Template and size as for createSession(); absent: the defaults,
   * resolved in the answer. */
  template?: string;
  size?: string;
  /** The organisation its desktops count against; absent: the caller's. */
  org?: string;
  /** The user the desktops are for; absent: the caller (only an
   * administrator may name someone else). */
  username?: string;
}

/** Whose schedules listSchedules() returns. */
export interface ScheduleFilter {
  /** Only this user's; absent: the caller's (an administrator: everyone's). */
  username?: string;
}

/** Whose kept disks listSnapshots() returns. */
export interface SnapshotFilter {
  /** Only this user's; absent: the caller's (an administrator: everyone's). */
  username?: string;
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
  /** Bound (ms) on each unary call (get, list, destroy, the pool, node,
   * audit, quota, schedule and kept disk calls). None by default: a destroy
   * waits for Terraform. Streams have no deadline. */
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
  readonly #replicas: Replicas;
  readonly #timeoutMs: number | undefined;

  /** Wraps any Connect transport (`close` is called by `close()`), or
   * several servers' (replicas of one service), tried in this order: a call
   * that finds one down moves on to the next. */
  constructor(
    transport: Transport | readonly Replica[],
    options: { timeoutMs?: number; close?: () => void; endpoint?: string } = {},
  ) {
    // Array.isArray does not narrow a readonly array type.
    const one = (transport: Transport): Replica[] => {
      const replica: Replica = { endpoint: options.endpoint ?? "", transport };
      if (options.close) replica.close = options.close;
      return [replica];
    };
    this.#replicas = new Replicas(
      Array.isArray(transport) ? (transport as readonly Replica[]) : one(transport as Transport),
    );
    this.#timeoutMs = options.timeoutMs;
  }

  /**
   * Connects to `endpoint` (`host:port` or `https://host:port`) with the CA
   * that signed the server's certificate and the caller's client certificate
   * and key (PEM files, e.g. from `daas-server pki`).
   *
   * `endpoint` may name several servers (replicas of one service): a list, or
   * a string separated by commas as DAAS_ENDPOINT may be. They are tried in
   * order: a call that finds one down (UNAVAILABLE; refused, reset) moves on
   * to the next. A host name resolving to several addresses is tried at each
   * by Node itself.
   */
  static async fromFiles(
    endpoint: string | readonly string[],
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
  static fromPem(
    endpoint: string | readonly string[],
    pem: PemCredentials,
    options: ClientOptions = {},
  ): DaasClient {
    const tls: { ca: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string } = {
      ca: pem.ca,
    };
    if (pem.cert !== undefined) tls.cert = pem.cert;
    if (pem.key !== undefined) tls.key = pem.key;
    if (options.serverName !== undefined) tls.servername = options.serverName;
    const replicas = splitEndpoints(endpoint).map((each): Replica => {
      const url = baseUrl(each);
      const sessionManager = new Http2SessionManager(url, { pingIntervalMs: 30_000 }, tls);
      return {
        endpoint: url,
        transport: createGrpcTransport({ baseUrl: url, sessionManager }),
        close: () => sessionManager.abort(),
      };
    });
    return new DaasClient(replicas, options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {});
  }

  /**
   * Creates a desktop and returns its live events (the call starts now).
   * The last event is READY (`stream.session` has the RDP endpoint) or
   * FAILED (`stream.session.failure` says where and why).
   */
  createSession(request: CreateSessionOptions = {}, options: CallOptions = {}): EventStream {
    const create = {
      username: request.username ?? "",
      sessionUser: request.sessionUser ?? "",
      sessionPassword: request.sessionPassword ?? "",
      template: request.template ?? "",
      size: request.size ?? "",
      org: request.org ?? "",
      requestId: request.requestId || randomUUID().replaceAll("-", ""),
    };
    return new EventStream(
      this.#replicas.round(),
      (client, _after, signal) => client.createSession(create, { signal }),
      options.signal,
      create.requestId,
    );
  }

  /** Every event of a session since the first (sequence 1), then live ones
   * until READY, FAILED or DESTROYED. On the next server after one went away,
   * only the events after the last one received. */
  watch(sessionId: string, options: CallOptions = {}): EventStream {
    return new EventStream(
      this.#replicas.round(),
      (client, afterSequence, signal) => client.watchSession({ sessionId, afterSequence }, { signal }),
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
      org: filter.org ?? "",
      pageSize: filter.pageSize ?? 1000,
      pageToken: "",
    };
    for (;;) {
      const response = await this.#unary(
        (client) => client.listSessions(request, this.#callOptions(options)),
        options.signal,
      );
      yield response.sessions;
      if (!response.nextPageToken) return;
      request.pageToken = response.nextPageToken;
    }
  }

  /** One session (NOT_FOUND for an unknown id). */
  get(sessionId: string, options: CallOptions = {}): Promise<Session> {
    return this.#unary(
      (client) => client.getSession({ sessionId }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** Destroys a session's desktop and returns the session, DESTROYED.
   * Idempotent; ABORTED when Terraform failed (destroying again retries). */
  destroy(sessionId: string, options: CallOptions = {}): Promise<Session> {
    return this.#unary(
      (client) => client.destroySession({ sessionId }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** Every warm pool the server configures, by name, and where each stands
   * (administrators only: PERMISSION_DENIED otherwise). */
  async listPools(options: CallOptions = {}): Promise<Pool[]> {
    const response = await this.#unary(
      (client) => client.listPools({}, this.#callOptions(options)),
      options.signal,
    );
    return response.pools;
  }

  /** One warm pool (NOT_FOUND for a pool the server does not configure;
   * administrators only: PERMISSION_DENIED otherwise). */
  getPool(name: string, options: CallOptions = {}): Promise<Pool> {
    return this.#unary(
      (client) => client.getPool({ name }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** The templates the caller may create desktops of, by name, with their
   * sizes; `defaultTemplate` is a create's when it names none, and `open`
   * says the server has no catalog (any template name goes, in the one size
   * listed). */
  listTemplates(options: CallOptions = {}): Promise<ListTemplatesResponse> {
    return this.#unary(
      (client) => client.listTemplates({}, this.#callOptions(options)),
      options.signal,
    );
  }

  /** An organisation's quota (`orgMax`) and what its live desktops use
   * (`orgUsed`), with one member's (`userMax`, `userUsed`), and the
   * organisations the caller administers (`administers`); in a maximum, 0
   * is no limit. A caller in no organisation gets `org` empty and the
   * server's per-user limit in `userMax`. NOT_FOUND for an organisation the
   * server does not configure; PERMISSION_DENIED for one the caller may not
   * see. */
  getQuota(request: QuotaOptions = {}, options: CallOptions = {}): Promise<Quota> {
    const quota = { org: request.org ?? "", username: request.username ?? "" };
    return this.#unary(
      (client) => client.getQuota(quota, this.#callOptions(options)),
      options.signal,
    );
  }

  /** Adds a schedule: a desktop READY at `at` on `days` in `timezone`,
   * created ahead as an ordinary session of the user within the quotas and
   * the catalog as checked now and when it runs; `nextAt` in the answer is
   * when the next desktop is due READY. INVALID_ARGUMENT names the bad
   * field (`at`, `days`, `timezone`, `template`, `size`, `org`);
   * RESOURCE_EXHAUSTED past the schedules a user may have. Like every call
   * it moves to the next server when one is down; having no idempotency
   * key, it is added twice when a server stores it and goes away before
   * answering (listSchedules() shows both). */
  addSchedule(request: AddScheduleOptions, options: CallOptions = {}): Promise<Schedule> {
    const schedule = {
      username: request.username ?? "",
      at: request.at,
      days: request.days,
      timezone: request.timezone ?? "",
      template: request.template ?? "",
      size: request.size ?? "",
      org: request.org ?? "",
    };
    return this.#unary(
      (client) => client.addSchedule(schedule, this.#callOptions(options)),
      options.signal,
    );
  }

  /** The caller's schedules by time of day, one user's, or for an
   * administrator everyone's (by user). */
  async listSchedules(filter: ScheduleFilter = {}, options: CallOptions = {}): Promise<Schedule[]> {
    const response = await this.#unary(
      (client) => client.listSchedules({ username: filter.username ?? "" }, this.#callOptions(options)),
      options.signal,
    );
    return response.schedules;
  }

  /** Removes a schedule and resolves to it (desktops it already made stay).
   * NOT_FOUND for an unknown id; PERMISSION_DENIED for another user's
   * (unless an administrator). */
  removeSchedule(scheduleId: string, options: CallOptions = {}): Promise<Schedule> {
    return this.#unary(
      (client) => client.removeSchedule({ scheduleId }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** The kept disks of persistent templates (`persistent = true`), newest
   * first: a desktop of one keeps its disk when destroyed, and its user's
   * next create of the template restores it (the restored session's
   * `restoredFrom` names it). The caller's, one user's, or for an
   * administrator everyone's. */
  async listSnapshots(filter: SnapshotFilter = {}, options: CallOptions = {}): Promise<Snapshot[]> {
    const response = await this.#unary(
      (client) => client.listSnapshots({ username: filter.username ?? "" }, this.#callOptions(options)),
      options.signal,
    );
    return response.snapshots;
  }

  /** Deletes a kept disk and resolves to it (the next create of its template
   * starts blank). NOT_FOUND for an unknown id; PERMISSION_DENIED for
   * another user's (unless an administrator); ABORTED while a desktop is
   * being restored from it. */
  deleteSnapshot(snapshotId: string, options: CallOptions = {}): Promise<Snapshot> {
    return this.#unary(
      (client) => client.deleteSnapshot({ snapshotId }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** Every node of the cluster, by name, as the Terraform module last
   * reported it, with the desktops placed on it; empty when the module
   * places its VMs itself (administrators only: PERMISSION_DENIED otherwise). */
  async listNodes(options: CallOptions = {}): Promise<Node[]> {
    const response = await this.#unary(
      (client) => client.listNodes({}, this.#callOptions(options)),
      options.signal,
    );
    return response.nodes;
  }

  /** Drains a node: it takes no new desktop (its users' desktops stay until
   * they end, its unclaimed pool desktops are replaced on other nodes);
   * resolves to it, `drained`. Idempotent. NOT_FOUND for a node the server
   * does not know; administrators only. */
  drainNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.#unary(
      (client) => client.drainNode({ name }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** Ends a node's drain: it takes new desktops again; resolves to it.
   * Idempotent. Errors as drainNode()'s. */
  resumeNode(name: string, options: CallOptions = {}): Promise<Node> {
    return this.#unary(
      (client) => client.resumeNode({ name }, this.#callOptions(options)),
      options.signal,
    );
  }

  /** The audit trail, newest first: creates, claims, destroys, reaps, agent
   * certificates issued and refused calls, with who, from where and the
   * result (administrators, and an organisation's administrators with `org`:
   * PERMISSION_DENIED otherwise). The server
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
      org: filter.org ?? "",
      pageSize: filter.pageSize ?? 1000,
      pageToken: "",
      ...(filter.since ? { since: timestampFromDate(filter.since) } : {}),
    };
    for (;;) {
      const response = await this.#unary(
        (client) => client.listAudit(request, this.#callOptions(options)),
        options.signal,
      );
      yield response.entries;
      if (!response.nextPageToken) return;
      request.pageToken = response.nextPageToken;
    }
  }

  /** Closes the connections (and any open stream). */
  close(): void {
    this.#replicas.close();
  }

  /** For logs: the endpoints, never credentials. */
  toString(): string {
    return `DaasClient(${this.#replicas.endpoints.filter((e) => e).join(", ")})`;
  }

  #callOptions(options: CallOptions): { signal?: AbortSignal; timeoutMs?: number } {
    const out: { signal?: AbortSignal; timeoutMs?: number } = {};
    if (options.signal) out.signal = options.signal;
    if (this.#timeoutMs !== undefined) out.timeoutMs = this.#timeoutMs;
    return out;
  }

  /** `call` on the server in use, then on the next while one is down;
   * `signal` is the call's own (its abort is no server down). */
  async #unary<T>(
    call: (client: Client<typeof DesktopService>) => Promise<T>,
    signal: AbortSignal | undefined,
  ): Promise<T> {
    const round = this.#replicas.round();
    for (;;) {
      try {
        return await call(round.client);
      } catch (reason) {
        const err = DaasError.from(reason);
        if (signal?.aborted || !isServerDown(err)) throw err;
        round.failed(err); // throws when every server is down
      }
    }
  }
}
