// The TypeScript client against the real daas-server (see server.ts).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import dns from "node:dns";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { inspect } from "node:util";
import { after, before, describe as suite, test } from "node:test";

import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";

import {
  Code,
  DaasClient,
  DaasError,
  EventStream,
  SessionState,
  describe,
  parseState,
  pb,
  stateName,
  type Amounts,
  type Session,
  type SessionEvent,
} from "../src/index.js";
import { BadRequestSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { NOTES, PACKAGE_DIR, PHYSICS, TestReplicas, TestServer } from "./server.js";

const STAGES = ["QUEUED", "PROVISIONING", "BOOTING", "CONFIGURING", "READY"];
/** Bound on any one stream, so a hang fails instead of waiting. */
const STREAM_LIMIT_MS = 240_000;
const UNKNOWN_ID = "00000000-0000-4000-8000-000000000000";

/** Every event of a stream; one still open after the limit is cancelled. */
async function drain(stream: EventStream, limitMs = STREAM_LIMIT_MS): Promise<SessionEvent[]> {
  const timer = setTimeout(() => stream.cancel(), limitMs);
  try {
    const events: SessionEvent[] = [];
    for await (const event of stream) events.push(event);
    return events;
  } finally {
    clearTimeout(timer);
  }
}

const stages = (events: SessionEvent[]): string[] =>
  events.filter((e) => e.kind.case === "stageChange").map((e) => stateName(e.state));
const sequences = (events: SessionEvent[]): number[] => events.map((e) => Number(e.sequence));
const oneToN = (n: number): number[] => Array.from({ length: n }, (_, i) => i + 1);
const bytes = (e: SessionEvent): string =>
  Buffer.from(toBinary(pb.SessionEventSchema, e)).toString("hex");

/** The DaasError a call rejects with. */
async function failure(call: () => Promise<unknown>): Promise<DaasError> {
  try {
    await call();
  } catch (err) {
    assert.ok(err instanceof DaasError, `not a DaasError: ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

suite("DaasClient against daas-server", () => {
  let server: TestServer;
  let alice: DaasClient;
  let bob: DaasClient;
  let admin: DaasClient;
  // A session alice created, streamed to its end (by the first test).
  let ready: { events: SessionEvent[]; session: Session } | undefined;

  before(async () => {
    server = await TestServer.start();
    alice = await server.client("alice");
    bob = await server.client("bob");
    admin = await server.client("root", true);
  });

  after(async () => {
    for (const client of [alice, bob, admin]) client?.close();
    await server?.stop();
  });

  const readySession = async (): Promise<{ events: SessionEvent[]; session: Session }> => {
    if (!ready) {
      const stream = alice.createSession();
      const events = await drain(stream);
      assert.ok(stream.session, events.map(describe).join("\n"));
      ready = { events, session: stream.session };
    }
    return ready;
  };

  test("a streamed create goes through every stage in order to READY", async () => {
    const { events, session } = await readySession();
    assert.deepEqual(stages(events), STAGES, events.map(describe).join("\n"));
    assert.deepEqual(sequences(events), oneToN(events.length), "numbered from 1, no gaps");
    assert.equal(events.at(-1)?.state, SessionState.READY);
    assert.ok(events.some((e) => e.kind.case === "output"), "tool output is streamed");
    assert.equal(new Set(events.map((e) => e.sessionId)).size, 1);
    // The last event carries the whole session with its RDP endpoint.
    assert.equal(session.id, events[0]?.sessionId);
    assert.equal(session.username, "alice", "an empty username means the caller");
    assert.equal(session.state, SessionState.READY);
    assert.ok(session.rdpHost && session.rdpPort > 0);
    assert.match(session.vmName, /^desktop-/);
    assert.ok(session.readyAt);
    assert.match(describe(events.at(-1)!), /^READY/);
  });

  test("watch after a disconnect replays from sequence 1", async () => {
    const stream = alice.createSession({ template: "debian-12-xfce" });
    let first: SessionEvent | undefined;
    for await (const event of stream) {
      first = event;
      break; // leaving the loop disconnects; the server goes on
    }
    assert.ok(first);
    assert.equal(first.sequence, 1n);
    assert.equal(stateName(first.state), "QUEUED");
    assert.deepEqual(await drain(stream), [], "a left stream yields nothing more");
    // Still provisioning (terraform apply alone takes over a second): the
    // watch below replays, then follows live.
    assert.notEqual((await alice.get(first.sessionId)).state, SessionState.READY);

    const watched = await drain(alice.watch(first.sessionId));
    assert.equal(watched[0]?.sequence, 1n, "the replay starts at sequence 1");
    assert.deepEqual(sequences(watched), oneToN(watched.length));
    assert.deepEqual(stages(watched), STAGES, watched.map(describe).join("\n"));
    assert.equal(bytes(watched[0]!), bytes(first), "the same stored event");
    const got = await alice.get(first.sessionId);
    assert.equal(got.template, "debian-12-xfce");
    assert.deepEqual([got.size?.name, got.size?.memoryMb], ["standard", 4096n]);

    // Once READY, a watch replays the same history and ends.
    const again = await drain(alice.watch(first.sessionId));
    assert.deepEqual(again.map(bytes), watched.map(bytes));
  });

  test("cancel() closes a stream quietly", async () => {
    const { session } = await readySession();
    const stream = alice.watch(session.id);
    const seen: SessionEvent[] = [];
    for await (const event of stream) {
      seen.push(event);
      stream.cancel();
    }
    assert.equal(seen.length, 1, "no event after cancel()");
    assert.equal(seen[0]?.sequence, 1n);
    assert.deepEqual(await drain(stream), []);
  });

  test("list, get and destroy", async () => {
    const { session } = await readySession();
    const got = await alice.get(session.id);
    assert.equal(got.id, session.id);
    assert.equal(got.state, SessionState.READY);
    assert.equal(got.rdpPort, session.rdpPort);

    const mine = await alice.list();
    assert.ok(mine.some((s) => s.id === session.id));
    assert.ok(mine.every((s) => s.username === "alice"));
    assert.ok((await alice.list({ state: "ready" })).some((s) => s.id === session.id));
    assert.ok(
      (await admin.list({ username: "alice", state: SessionState.READY })).some((s) => s.id === session.id),
    );
    assert.ok(!(await alice.list({ state: "destroyed" })).some((s) => s.id === session.id));

    const destroyed = await alice.destroy(session.id);
    assert.equal(destroyed.state, SessionState.DESTROYED);
    assert.equal((await alice.get(session.id)).state, SessionState.DESTROYED);
    assert.ok((await alice.list({ state: "DESTROYED" })).some((s) => s.id === session.id));
    assert.equal((await alice.destroy(session.id)).state, SessionState.DESTROYED, "idempotent");
    // The history ends with the destruction.
    assert.deepEqual(stages(await drain(alice.watch(session.id))).slice(-2), ["DESTROYING", "DESTROYED"]);

    const notFound = await failure(() => alice.get(UNKNOWN_ID));
    assert.equal(notFound.code, Code.NotFound);
    assert.equal(notFound.codeName, "NOT_FOUND");
  });

  test("a bad username is INVALID_ARGUMENT naming the field", async () => {
    for (const username of ["a/b", "x".repeat(21), "tab\there"]) {
      const err = await failure(() => drain(admin.createSession({ username })));
      assert.equal(err.code, Code.InvalidArgument, err.message);
      assert.match(err.rawMessage, /^username /);
      assert.equal(err.message, `INVALID_ARGUMENT: ${err.rawMessage}`);
      // The field, from the status's google.rpc.BadRequest details.
      assert.equal(err.fieldViolations.length, 1, inspect(err.fieldViolations));
      const [violation] = err.fieldViolations;
      assert.equal(violation?.field, "username");
      assert.ok(violation?.description);
      assert.equal(err.rawMessage, `username ${violation.description}`);
      assert.equal(err.retryAfterSeconds, undefined);
    }
  });

  test("list() follows every page", async () => {
    const erin = await server.client("erin");
    try {
      // One after the other (each stored before the next starts), then all
      // streamed to READY together.
      const streams: EventStream[] = [];
      for (let i = 0; i < 3; i++) {
        const stream = erin.createSession();
        for await (const _ of stream) break; // the first event: it is stored
        streams.push(stream);
      }
      assert.equal(streams.length, 3);
      // Leaving the loop closed each stream: watch each to READY.
      const created: string[] = [];
      for (const stream of streams) {
        const events = await drain(erin.watch(stream.last!.sessionId));
        assert.equal(events.at(-1)?.state, SessionState.READY, events.map(describe).join("\n"));
        created.push(stream.last!.sessionId);
      }

      const newestFirst = [...created].reverse();
      const ids = (sessions: Session[]): string[] => sessions.map((s) => s.id);
      assert.deepEqual(ids(await erin.list({ pageSize: 2 })), newestFirst, "3 sessions, pages of 2");
      assert.deepEqual(ids(await erin.list()), newestFirst);
      const pages: string[][] = [];
      for await (const page of erin.listPages({ pageSize: 2 })) pages.push(ids(page));
      assert.deepEqual(pages, [newestFirst.slice(0, 2), newestFirst.slice(2)]);
      const sizes: number[] = [];
      for await (const page of erin.listPages({ pageSize: 3 })) sizes.push(page.length);
      assert.deepEqual(sizes, [3], "no empty last page");
      assert.deepEqual(ids(await erin.list({ state: "ready", pageSize: 1 })), newestFirst);

      const err = await failure(() => erin.list({ pageSize: 1001 }));
      assert.equal(err.code, Code.InvalidArgument);
      assert.deepEqual(err.fieldViolations.map((v) => v.field), ["page_size"]);
    } finally {
      erin.close();
    }
  });

  test("a create repeated with its requestId makes no new desktop", async () => {
    const dave = await server.client("dave");
    try {
      const first = dave.createSession({ requestId: "dave-create-1" });
      const firstEvents = await drain(first);
      assert.deepEqual(stages(firstEvents), STAGES);
      assert.ok(first.session);
      const again = dave.createSession({ requestId: "dave-create-1" });
      const againEvents = await drain(again);
      assert.equal(again.session?.id, first.session.id);
      assert.deepEqual(stages(againEvents), STAGES, "the same session's events, from the start");
      assert.equal(againEvents[0]?.sequence, 1n);
      assert.deepEqual((await dave.list()).map((s) => s.id), [first.session.id], "one session, not two");

      const reused = await failure(() =>
        drain(dave.createSession({ template: "windows-11", requestId: "dave-create-1" })),
      );
      assert.equal(reused.code, Code.InvalidArgument);
      assert.deepEqual(reused.fieldViolations.map((v) => v.field), ["request_id"]);
      const bad = await failure(() => drain(dave.createSession({ requestId: "no spaces" })));
      assert.equal(bad.code, Code.InvalidArgument);
      assert.deepEqual(bad.fieldViolations.map((v) => v.field), ["request_id"]);
      assert.equal((await dave.list()).length, 1);
    } finally {
      dave.close();
    }
  });

  test("the password is checked and never echoed", async () => {
    const secret = "short7!";
    const err = await failure(() =>
      drain(alice.createSession({ sessionUser: "bob", sessionPassword: secret })),
    );
    assert.equal(err.code, Code.InvalidArgument);
    assert.match(err.rawMessage, /session_password/);
    assert.ok(!inspect(err).includes(secret));
  });

  test("another user's session is PERMISSION_DENIED", async () => {
    const { session } = await readySession();
    const calls: Record<string, () => Promise<unknown>> = {
      get: () => bob.get(session.id),
      watch: () => drain(bob.watch(session.id)),
      destroy: () => bob.destroy(session.id),
      list: () => bob.list({ username: "alice" }),
      create: () => drain(bob.createSession({ username: "alice" })),
    };
    for (const [name, call] of Object.entries(calls)) {
      const err = await failure(call);
      assert.equal(err.code, Code.PermissionDenied, `${name}: ${err.message}`);
    }
    assert.ok(!(await bob.list()).some((s) => s.id === session.id), "bob sees only his own sessions");
  });

  test("the audit trail shows the create, to administrators only", async () => {
    const { session } = await readySession();
    const hourAgo = new Date(Date.now() - 3_600_000);
    const entries = await admin.listAudit({ username: "alice", sessionId: session.id, since: hourAgo });
    const creates = entries.filter((e) => e.action === "create");
    assert.equal(creates.length, 1, entries.map((e) => `${e.actor} ${e.action} ${e.result}`).join("\n"));
    const create = creates[0]!;
    assert.deepEqual([create.actor, create.owner, create.result], ["alice", "alice", "OK"]);
    assert.match(create.peer, /^127\.0\.0\.1:\d+$/);
    assert.match(create.fingerprint, /^[0-9a-f]{64}$/);
    for await (const page of admin.listAuditPages({ sessionId: session.id, pageSize: 1 })) {
      assert.equal(page.length, 1);
    }
    assert.deepEqual(await admin.listAudit({ since: new Date(Date.now() + 3_600_000) }), []);
    const err = await failure(() => alice.listAudit());
    assert.equal(err.code, Code.PermissionDenied);
  });

  test("templates and sizes", async () => {
    // The test server has no catalog: its default template, in [vm]'s size.
    const answer = await alice.listTemplates();
    assert.ok(answer.open);
    assert.equal(answer.defaultTemplate, "debian-12-xfce");
    assert.deepEqual(
      answer.templates.map((t) => [t.name, t.defaultSize, t.sizes.map((s) => [s.name, s.cores])]),
      [["debian-12-xfce", "standard", [["standard", 2]]]],
    );
    const err = await failure(() => drain(alice.createSession({ size: "huge" })));
    assert.equal(err.code, Code.InvalidArgument, err.message);
    assert.deepEqual(err.fieldViolations.map((v) => v.field), ["size"]);
    assert.match(err.rawMessage, /its sizes: standard \(2 cores/);
  });

  test("schedules are added, listed and removed; a bad time is INVALID_ARGUMENT naming at", async () => {
    const added = await alice.addSchedule({ at: "08:00", days: "mon-fri", timezone: "Europe/Paris" });
    assert.deepEqual(
      [added.username, added.at, added.days, added.timezone],
      ["alice", "08:00", "mon-fri", "Europe/Paris"],
    );
    // The test server has no catalog: the defaults, resolved.
    assert.deepEqual([added.template, added.size], ["debian-12-xfce", "standard"]);
    // The next desktop is due READY at 08:00 on a weekday in Paris, within days.
    assert.ok(added.nextAt, "a next time");
    const due = timestampDate(added.nextAt);
    const parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: "Europe/Paris",
      weekday: "short",
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    }).formatToParts(due);
    const part = (type: string): string | undefined => parts.find((p) => p.type === type)?.value;
    assert.deepEqual([part("hour"), part("minute")], ["08", "00"], due.toISOString());
    assert.ok(["Mon", "Tue", "Wed", "Thu", "Fri"].includes(part("weekday") ?? ""), due.toISOString());
    const now = Date.now();
    assert.ok(due.getTime() > now - 3_600_000 && due.getTime() < now + 4 * 86_400_000, due.toISOString());

    const ids = (schedules: { id: string }[]): string[] => schedules.map((s) => s.id);
    assert.deepEqual(ids(await alice.listSchedules()), [added.id]);
    assert.deepEqual(ids(await admin.listSchedules({ username: "alice" })), [added.id]);
    assert.ok(ids(await admin.listSchedules()).includes(added.id), "everyone's");
    assert.ok(!ids(await bob.listSchedules()).includes(added.id));
    assert.equal((await failure(() => bob.removeSchedule(added.id))).code, Code.PermissionDenied);

    const removed = await alice.removeSchedule(added.id);
    assert.deepEqual([removed.id, removed.username], [added.id, "alice"]);
    assert.deepEqual(await alice.listSchedules(), []);
    assert.equal((await failure(() => alice.removeSchedule(added.id))).code, Code.NotFound);

    const bad = await failure(() => alice.addSchedule({ at: "25:00", days: "mon-fri", timezone: "Europe/Paris" }));
    assert.equal(bad.code, Code.InvalidArgument, bad.message);
    assert.deepEqual(bad.fieldViolations.map((v) => v.field), ["at"]);
    assert.match(bad.rawMessage, /^at /);
    assert.deepEqual(await alice.listSchedules(), []);
  });

  test("nodes are for administrators, and an unknown one is NOT_FOUND", async () => {
    // The test module reports no nodes (it places its VMs itself).
    assert.deepEqual(await admin.listNodes(), []);
    for (const call of [() => admin.drainNode("pve9"), () => admin.resumeNode("pve9")]) {
      const err = await failure(call);
      assert.equal(err.code, Code.NotFound, err.message);
      assert.match(err.rawMessage, /no node pve9/);
    }
    assert.equal((await failure(() => admin.drainNode("not a node"))).code, Code.InvalidArgument);
    for (const call of [() => alice.listNodes(), () => alice.drainNode("pve9")]) {
      assert.equal((await failure(call)).code, Code.PermissionDenied);
    }
  });

  test("a connection without a client certificate is refused", async () => {
    const { ca } = server.credentials("alice");
    const anonymous = DaasClient.fromPem(
      server.endpoint,
      { ca: readFileSync(ca) },
      { serverName: "localhost", timeoutMs: 20_000 },
    );
    try {
      const err = await failure(() => anonymous.list());
      assert.equal(err.code, Code.Unavailable, err.message);
      // The TLS handshake was refused (alert "certificate required"), not
      // the TCP connection.
      assert.match(err.rawMessage, /certificate required/i);
    } finally {
      anonymous.close();
    }
    // With the certificate, the same server answers.
    await alice.list();
  });

  test("the README example runs", async () => {
    const readme = readFileSync(join(PACKAGE_DIR, "README.md"), "utf8");
    const code = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(code, "README.md has a ts example");
    // Plain JavaScript too; in the package folder "@daas/client" resolves to
    // the package itself (dist/src/index.js).
    const script = join(PACKAGE_DIR, "dist", "readme-example.mjs");
    writeFileSync(script, code);
    const { ca, cert, key } = server.credentials("carol");
    const env = {
      ...process.env,
      DAAS_ENDPOINT: server.endpoint,
      DAAS_CA: ca,
      DAAS_CERT: cert,
      DAAS_KEY: key,
      DAAS_SESSION_PASSWORD: "correct-horse-9",
    };
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [script], {
      env,
      timeout: STREAM_LIMIT_MS,
    });
    const lines = stdout.split("\n").filter((line) => line && !line.startsWith(" "));
    assert.deepEqual(lines.slice(0, 5).map((line) => line.split(":")[0]), STAGES, stdout);
    assert.match(stdout, /^RDP: \S+:\d+; ready: 1$/m);
    assert.ok(!(stdout + stderr).includes("correct-horse-9"));
    const carol = await server.client("carol");
    try {
      const sessions = await carol.list();
      assert.equal(sessions.length, 1);
      assert.equal(sessions[0]?.state, SessionState.DESTROYED);
      assert.equal(sessions[0]?.sessionUser, "bob");
    } finally {
      carol.close();
    }
  });

  test("no key material in what a client shows", async () => {
    const { key } = server.credentials("alice");
    const pem = readFileSync(key, "utf8");
    const client = await server.client("alice");
    try {
      for (const text of [String(client), inspect(client, { showHidden: true, depth: 5 })]) {
        assert.ok(!text.includes("PRIVATE KEY") && !text.includes(pem), text);
      }
      assert.equal(String(client), `DaasClient(${server.endpoint})`);
    } finally {
      client.close();
    }
  });
});

test("limits say when to retry (a server of its own with low limits)", async () => {
  // One live desktop in all, one create a minute per user (no burst).
  const limited = await TestServer.start({
    max_sessions: 1,
    max_sessions_per_user: 1,
    creates_per_minute: 1,
    create_burst: 1,
  });
  const frank = await limited.client("frank");
  const grace = await limited.client("grace");
  try {
    const first = frank.createSession();
    await drain(first);
    assert.equal(first.session?.state, SessionState.READY);

    const rate = await failure(() => drain(frank.createSession()));
    assert.equal(rate.code, Code.ResourceExhausted, rate.message);
    const after = rate.retryAfterSeconds;
    assert.ok(after !== undefined && after > 0 && after <= 60, String(after));
    // From the google.rpc.RetryInfo details: the retry-after metadata
    // carries whole seconds only.
    assert.ok(!Number.isInteger(after), String(after));
    assert.ok(rate.rawMessage.includes(`try again in ${Math.max(1, Math.floor(after))} s`), rate.rawMessage);

    // Too many live desktops: waiting does not help, so no hint.
    const full = await failure(() => drain(grace.createSession()));
    assert.equal(full.code, Code.ResourceExhausted, full.message);
    assert.equal(full.retryAfterSeconds, undefined);
    assert.deepEqual(full.fieldViolations, []);
  } finally {
    frank.close();
    grace.close();
    await limited.stop();
  }
});

/** A server of its own with organisation physics (PHYSICS) and the catalog
 * of NOTES, for the quota and kept disk tests: started by the first to ask,
 * stopped after the file's tests. */
let orgServer: Promise<TestServer> | undefined;
const startOrgServer = (): Promise<TestServer> => (orgServer ??= TestServer.start({}, PHYSICS + NOTES));
after(async () => {
  await (await orgServer)?.stop();
});

test("quotas count an organisation's desktops and each member's share (a server of its own)", async () => {
  const org = await startOrgServer();
  const dave = await org.client("dave", false, ["physics"]);
  const erin = await org.client("erin", false, ["physics"]);
  const grace = await org.client("grace", false, ["physics-admins"]);
  const alice = await org.client("alice");
  const admin = await org.client("root", true);
  const amounts = (a: Amounts | undefined): number[] =>
    a ? [a.desktops, a.cores, Number(a.memoryMb)] : [];
  try {
    const quota = await dave.getQuota();
    assert.deepEqual([quota.org, quota.orgTitle, quota.username], ["physics", "Physics", "dave"]);
    assert.deepEqual(amounts(quota.orgMax), [2, 4, 8192]);
    assert.deepEqual(amounts(quota.userMax), [1, 0, 0], "0: no limit");
    assert.deepEqual(amounts(quota.orgUsed), [0, 0, 0]);
    assert.deepEqual(quota.administers, []);

    // dave's desktop counts against physics at its size; his share is full.
    const created = dave.createSession();
    await drain(created);
    assert.equal(created.session?.org, "physics");
    assert.equal((await dave.get(created.session.id)).org, "physics");
    assert.deepEqual(amounts((await dave.getQuota()).userUsed), [1, 2, 4096]);
    const full = await failure(() => drain(dave.createSession()));
    assert.equal(full.code, Code.ResourceExhausted, full.message);
    assert.match(full.rawMessage, /quota/);
    const erins = erin.createSession({ org: "physics" });
    await drain(erins);
    assert.equal(erins.session?.org, "physics");

    // The organisation's administrators and a server administrator: the
    // organisation alone, its sessions, its part of the audit trail.
    const physics = await grace.getQuota({ org: "physics" });
    assert.equal(physics.username, "");
    assert.equal(physics.userMax, undefined);
    assert.deepEqual(amounts(physics.orgUsed), [2, 4, 8192]);
    assert.deepEqual(physics.administers, ["physics"]);
    for (const overseer of [grace, admin]) {
      const users = (await overseer.list({ org: "physics" })).map((s) => s.username).sort();
      assert.deepEqual(users, ["dave", "erin"]);
      const entries = await overseer.listAudit({ org: "physics" });
      assert.ok(
        entries.some((e) => e.action === "create" && e.sessionId === created.session?.id && e.org === "physics"),
        entries.map((e) => `${e.actor} ${e.action} ${e.org}`).join("\n"),
      );
    }
    assert.equal((await failure(() => admin.getQuota({ org: "chemistry" }))).code, Code.NotFound);

    // alice is in no organisation: the server's per-user limit only.
    const alone = await alice.getQuota();
    assert.deepEqual([alone.org, alone.username, alone.userMax?.desktops], ["", "alice", 100]);
    assert.equal(alone.orgMax, undefined);
    assert.equal((await failure(() => alice.getQuota({ org: "physics" }))).code, Code.PermissionDenied);
    const refused = await failure(() => drain(alice.createSession({ org: "physics" })));
    assert.equal(refused.code, Code.PermissionDenied, refused.message);
  } finally {
    for (const client of [dave, erin, grace, alice, admin]) client.close();
  }
});

test("a kept disk is listed, restored and deleted (the organisation's server)", async () => {
  const org = await startOrgServer();
  // carol is in no organisation.
  const carol = await org.client("carol");
  const bob = await org.client("bob");
  const admin = await org.client("root", true);
  const readyNotes = async (): Promise<Session> => {
    const stream = carol.createSession({ template: "notes" });
    const events = await drain(stream);
    assert.ok(stream.session, events.map(describe).join("\n"));
    assert.equal(stream.session.state, SessionState.READY, events.map(describe).join("\n"));
    return stream.session;
  };
  const ids = (snapshots: { id: string }[]): string[] => snapshots.map((s) => s.id);
  try {
    assert.deepEqual(await carol.listSnapshots(), []);
    const first = await readyNotes();
    assert.equal(first.restoredFrom, "", "a fresh clone");
    await carol.destroy(first.id);
    const kept = await carol.listSnapshots();
    assert.equal(kept.length, 1);
    const [disk] = kept;
    assert.deepEqual(
      [disk?.id, disk?.username, disk?.template, disk?.size, disk?.vmName],
      [first.id, "carol", "notes", "standard", first.vmName],
    );
    // The test module's disks are 1 GB; no desktop is being restored.
    assert.deepEqual([disk?.sizeGb, disk?.restoringSessionId], [1, ""]);
    assert.ok(disk?.createdAt, "a time it was kept");
    assert.deepEqual(ids(await admin.listSnapshots({ username: "carol" })), [first.id]);
    assert.ok(ids(await admin.listSnapshots()).includes(first.id), "everyone's");
    assert.deepEqual(await bob.listSnapshots(), []);
    assert.equal((await failure(() => bob.listSnapshots({ username: "carol" }))).code, Code.PermissionDenied);
    assert.equal((await failure(() => bob.deleteSnapshot(first.id))).code, Code.PermissionDenied);

    // The next notes desktop is restored from it, which is forgotten just
    // after that desktop is READY.
    const second = await readyNotes();
    assert.equal(second.restoredFrom, first.id);
    assert.equal((await carol.get(second.id)).restoredFrom, first.id);
    const deadline = Date.now() + 10_000;
    while ((await carol.listSnapshots()).length > 0 && Date.now() < deadline) {
      await new Promise((done) => setTimeout(done, 200));
    }
    assert.deepEqual(await carol.listSnapshots(), [], "forgotten once READY");

    // Kept again when destroyed; deleted, it is gone.
    await carol.destroy(second.id);
    assert.deepEqual(ids(await carol.listSnapshots()), [second.id]);
    const deleted = await carol.deleteSnapshot(second.id);
    assert.deepEqual([deleted.id, deleted.username, deleted.template], [second.id, "carol", "notes"]);
    assert.deepEqual(await carol.listSnapshots(), []);
    const gone = await failure(() => carol.deleteSnapshot(second.id));
    assert.equal(gone.code, Code.NotFound, gone.message);
    assert.ok(gone.rawMessage.includes(second.id), gone.rawMessage);
  } finally {
    for (const client of [carol, bob, admin]) client.close();
  }
});

test("errors read the status details", () => {
  // A failed call as connect reports it: the details of the
  // grpc-status-details-bin trailer, each a type name and its bytes.
  const failed = (
    message: string,
    code: Code,
    metadata: Record<string, string>,
    ...details: { type: string; value: Uint8Array }[]
  ): ConnectError => {
    const err = new ConnectError(message, code, metadata);
    err.details = details;
    return err;
  };
  const detail = <Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>) => ({
    type: schema.typeName,
    value: toBinary(schema, message),
  });
  const nineAndAHalf = create(RetryInfoSchema, { retryDelay: { seconds: 9n, nanos: 400_000_000 } });
  const exhausted = DaasError.from(
    failed(
      "too many creates; retry in 9 s",
      Code.ResourceExhausted,
      { "retry-after": "9" },
      detail(RetryInfoSchema, nineAndAHalf),
    ),
  );
  assert.equal(exhausted.retryAfterSeconds, 9.4, "RetryInfo before the metadata");

  const five = create(RetryInfoSchema, { retryDelay: { seconds: 5n } });
  const unavailable = DaasError.from(
    failed("shutting down", Code.Unavailable, {}, detail(RetryInfoSchema, five)),
  );
  assert.equal(unavailable.retryAfterSeconds, 5);

  const bad = create(BadRequestSchema, {
    fieldViolations: [{ field: "username", description: "must be at most 20 characters" }],
  });
  const invalid = DaasError.from(
    failed("username must be ...", Code.InvalidArgument, {}, detail(BadRequestSchema, bad)),
  );
  assert.deepEqual(invalid.fieldViolations, [
    { field: "username", description: "must be at most 20 characters" },
  ]);
  assert.equal(invalid.retryAfterSeconds, undefined);

  // A detail that does not parse is skipped.
  const unparsable = { type: RetryInfoSchema.typeName, value: new Uint8Array([0xff, 0xff]) };
  const garbage = DaasError.from(failed("x", Code.ResourceExhausted, {}, unparsable));
  assert.equal(garbage.retryAfterSeconds, undefined);
});

test("errors carry the code and the retry hint", () => {
  const exhausted = DaasError.from(
    new ConnectError("too many creates; retry in 9 s", Code.ResourceExhausted, { "retry-after": "9" }),
  );
  assert.equal(exhausted.code, Code.ResourceExhausted);
  assert.equal(exhausted.retryAfterSeconds, 9);
  assert.equal(exhausted.message, "RESOURCE_EXHAUSTED: too many creates; retry in 9 s");
  const noHint = DaasError.from(new ConnectError("too many sessions", Code.ResourceExhausted));
  assert.equal(noHint.retryAfterSeconds, undefined);
  assert.deepEqual(noHint.fieldViolations, []);
  assert.equal(DaasError.from(new Error("boom")).code, Code.Unknown);
});

test("state names", () => {
  assert.equal(parseState("ready"), SessionState.READY);
  assert.equal(parseState("SESSION_STATE_FAILED"), SessionState.FAILED);
  assert.equal(parseState(undefined), SessionState.UNSPECIFIED);
  assert.throws(() => parseState("running"), /unknown session state/);
  assert.equal(stateName(SessionState.CONFIGURING), "CONFIGURING");
});

/** An endpoint nothing listens on: a port bound, then closed again. */
async function closedEndpoint(): Promise<string> {
  const listener = createServer();
  await new Promise<void>((listening) => listener.listen(0, "127.0.0.1", listening));
  const address = listener.address();
  await new Promise<void>((closed) => listener.close(() => closed()));
  assert.ok(address && typeof address === "object");
  return `https://127.0.0.1:${address.port}`;
}

/** Events of `stream` up to the first in `state`, the stream left open. */
async function until(stream: EventStream, state: SessionState): Promise<SessionEvent[]> {
  const events: SessionEvent[] = [];
  const iterator = stream[Symbol.asyncIterator]();
  for (;;) {
    const next = await iterator.next();
    assert.ok(!next.done, `the stream ended before ${stateName(state)}`);
    events.push(next.value);
    if (next.value.state === state) return events;
  }
}

suite("DaasClient against replicas of one server", () => {
  test("calls move to the next replica when one is down", async () => {
    const replicas = await TestReplicas.start();
    const clients: DaasClient[] = [];
    const client = async (endpoints: string | string[]): Promise<DaasClient> => {
      const made = await replicas.client("alice", endpoints);
      clients.push(made);
      return made;
    };
    try {
      const { a, b } = replicas;
      const closed = await closedEndpoint();
      const stream = (await client([closed, a.endpoint])).createSession();
      const events = await drain(stream);
      assert.ok(stream.session, events.map(describe).join("\n"));
      assert.match(stream.requestId, /^[0-9a-f]{32}$/, "a request id of its own");
      // One store: the other replica sees it (endpoints separated by commas).
      const onB = await client(`${closed}, ${b.endpoint}`);
      assert.deepEqual((await onB.list()).map((s) => s.id), [stream.session.id]);

      await a.kill();
      const aThenB = await client([a.endpoint, b.endpoint]);
      assert.equal((await aThenB.get(stream.session.id)).state, SessionState.READY);
      assert.equal((await aThenB.destroy(stream.session.id)).state, SessionState.DESTROYED);

      // A host name resolving to several addresses, the first one dead:
      // Node tries the next.
      const lookup = dns.lookup;
      const port = b.endpoint.split(":").at(-1);
      (dns as { lookup: unknown }).lookup = (
        _host: string,
        _options: unknown,
        done: (err: null, addresses: { address: string; family: number }[]) => void,
      ) => done(null, [
        { address: "127.0.0.2", family: 4 },
        { address: "127.0.0.1", family: 4 },
      ]);
      try {
        const named = await client(`https://replicas.test:${port}`);
        assert.equal((await named.list()).length, 1);
      } finally {
        dns.lookup = lookup;
      }

      const err = await failure(async () => (await client([closed, a.endpoint])).list());
      assert.equal(err.code, Code.Unavailable);
      assert.ok(err.rawMessage.startsWith(`no server answered: ${closed} (`), err.rawMessage);
      assert.ok(err.rawMessage.includes(`); ${a.endpoint} (`), err.rawMessage);
    } finally {
      for (const made of clients) made.close();
      await replicas.stop();
    }
  });

  test("a create and a watch whose replica dies go on with the same session", async () => {
    // The session waits in BOOTING (for an SSH port nobody serves): time
    // enough to kill the replica that is building it.
    const replicas = await TestReplicas.start("ssh");
    const alice = await replicas.client("alice", [replicas.a.endpoint, replicas.b.endpoint]);
    const onB = await replicas.client("alice", replicas.b.endpoint);
    try {
      const create = alice.createSession();
      const created = await until(create, SessionState.BOOTING);
      const id = created[0]!.sessionId;
      const watch = alice.watch(id);
      const watched = await until(watch, SessionState.BOOTING);

      await replicas.a.kill();
      // The create is sent again to B (the same request id), the watch asks
      // B for what came after its last event: both go on. Nobody builds it
      // any more: once A's lease runs out, B takes the session over and
      // fails it (it cannot go on with A's work).
      created.push(...(await drain(create)));
      watched.push(...(await drain(watch)));
      // One desktop: the create sent twice made no second session.
      assert.deepEqual((await onB.list()).map((s) => s.id), [id]);

      assert.deepEqual(sequences(created), oneToN(created.length), "each event once");
      assert.ok(created.every((e) => e.sessionId === id));
      assert.equal(created.at(-1)?.state, SessionState.FAILED, created.map(describe).join("\n"));
      assert.equal(create.session?.id, id);
      assert.equal(create.session?.state, SessionState.FAILED);
      const reason = create.session?.failure?.reason ?? "";
      assert.ok(reason.includes("stopped answering"), reason);
      assert.deepEqual(watched.map(bytes), created.map(bytes));
    } finally {
      alice.close();
      onB.close();
      await replicas.stop();
    }
  });
});
