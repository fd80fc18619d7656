// The servers a client may use, one after the other. Several daas-server
// replicas share one database, so any of them serves any call: a call that
// finds its server down (UNAVAILABLE, or the connection refused, reset or
// lost) moves on to the next, until each has failed once since the last
// answer. A host name resolving to several addresses needs nothing of this:
// Node's connect tries each of them (autoSelectFamily).

import { createClient, type Client, type Transport } from "@connectrpc/connect";

import { DesktopService } from "./gen/daas/v1/desktop_pb.js";
import { Code, DaasError } from "./errors.js";

/** One server of a client: where it is, and how to reach it. */
export interface Replica {
  /** The endpoint, for messages. */
  endpoint: string;
  transport: Transport;
  /** Closes the connection (called by DaasClient.close()). */
  close?: () => void;
}

/** Errors of the connection itself (Node's codes): the server is out of reach. */
const CONNECTION_CODES = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
]);

/** Whether a failure says its server is down, so that another may serve the
 * call: UNAVAILABLE, or (whatever code connect gave it) a connection or
 * HTTP/2 session that failed on the client's side. A call the caller did
 * not cancel that ends CANCELED lost its connection too (a server killed
 * midway closes its streams so). The caller checks its own signal first. */
export function isServerDown(err: DaasError): boolean {
  if (err.code === Code.Unavailable || err.code === Code.Canceled) return true;
  let reason: unknown = err.cause;
  for (let depth = 0; depth < 6 && reason instanceof Error; depth++) {
    const code = (reason as Error & { code?: unknown }).code;
    if (typeof code === "string" && (CONNECTION_CODES.has(code) || code.startsWith("ERR_HTTP2_"))) {
      return true;
    }
    reason = reason.cause;
  }
  return false;
}

/** The endpoints of a list, or of a string separated by commas (as
 * DAAS_ENDPOINT may be), trimmed, without empty items. */
export function splitEndpoints(endpoints: string | readonly string[]): string[] {
  const items = typeof endpoints === "string" ? endpoints.split(",") : endpoints;
  const found = items.map((item) => item.trim()).filter((item) => item !== "");
  if (found.length === 0) {
    throw new RangeError(`no endpoint in ${JSON.stringify(endpoints)}`);
  }
  return found;
}

/** A client's servers, each with its generated client, and the one new calls
 * go to first. */
export class Replicas {
  readonly #servers: { endpoint: string; client: Client<typeof DesktopService>; close: () => void }[];
  #first = 0;

  constructor(replicas: readonly Replica[]) {
    if (replicas.length === 0) throw new RangeError("no server to call");
    this.#servers = replicas.map(({ endpoint, transport, close }) => ({
      endpoint,
      client: createClient(DesktopService, transport),
      close: close ?? (() => undefined),
    }));
  }

  get count(): number {
    return this.#servers.length;
  }

  /** Every server's endpoint, in the order they are tried. */
  get endpoints(): string[] {
    return this.#servers.map((server) => server.endpoint);
  }

  /** A new round over the servers, for one call (or one stream), from the
   * server the last one moved on to. */
  round(): Round {
    return new Round(this, this.#first);
  }

  /** New calls start at server `at` (the one a call moved on to). */
  prefer(at: number): void {
    this.#first = at;
  }

  server(at: number): { endpoint: string; client: Client<typeof DesktopService> } {
    const server = this.#servers[at];
    if (!server) throw new RangeError(`no server ${at}`);
    return server;
  }

  close(): void {
    for (const server of this.#servers) server.close();
  }
}

/** Where one call (or one stream) stands among the servers: the one it uses,
 * and those that failed since the last answer. */
export class Round {
  readonly #replicas: Replicas;
  #at: number;
  readonly #failures = new Map<number, DaasError>();

  constructor(replicas: Replicas, at: number) {
    this.#replicas = replicas;
    this.#at = at;
  }

  /** The generated client of the server to call. */
  get client(): Client<typeof DesktopService> {
    return this.#replicas.server(this.#at).client;
  }

  /** The server answered: each server may fail once again. */
  answered(): void {
    this.#failures.clear();
  }

  /** The server in use is down (`err`): moves on to the next one that has not
   * failed in this round (where the client's next calls start too), or
   * throws UNAVAILABLE naming every server tried (the server's own error
   * when there is only one). */
  failed(err: DaasError): void {
    this.#failures.set(this.#at, err);
    const count = this.#replicas.count;
    for (let step = 1; step < count; step++) {
      const at = (this.#at + step) % count;
      if (!this.#failures.has(at)) {
        this.#at = at;
        this.#replicas.prefer(at);
        return;
      }
    }
    if (count === 1) throw err;
    const tried = [...this.#failures]
      .map(([at, failure]) => `${this.#replicas.server(at).endpoint} (${failure.rawMessage})`)
      .join("; ");
    throw new DaasError(Code.Unavailable, `no server answered: ${tried}`, { cause: err });
  }
}
