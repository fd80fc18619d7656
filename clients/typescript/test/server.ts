// One real daas-server for a test file: the binary built by
// `cargo build -p daas-server`, a fresh PKI (`daas-server pki`), the test
// Terraform module (terraform/test) and the test playbook run by the
// project's Ansible (.venv), in a temp dir, as server/src/testkit.rs does for
// the Rust tests. Overrides: DAAS_SERVER_BIN (the binary),
// DAAS_TEST_ANSIBLE_PLAYBOOK (ansible-playbook). TestReplicas runs two
// server processes on one PostgreSQL schema with a short lease (the embedded
// SQLite store is for one server only), each with a data folder of its own;
// a test may kill one. The test PostgreSQL is DAAS_TEST_POSTGRES (`make test`
// sets it), else the one `scripts/postgres.sh ensure` starts (or finds
// running) in the temporary folder, as server/src/testkit.rs does.

import { spawn, execFileSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { DaasClient } from "../src/index.js";

/** clients/typescript: the nearest folder up with a package.json (this file
 * runs as dist/test/server.js). */
function packageDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error("no package.json above the tests");
    dir = parent;
  }
  return dir;
}

/** clients/typescript. */
export const PACKAGE_DIR = packageDir();
/** The repository's root. */
export const REPO = resolve(PACKAGE_DIR, "../..");

const LISTENING = "daas-server listening on ";

function serverBinary(): string {
  const env = process.env["DAAS_SERVER_BIN"];
  if (env) return env;
  let target = process.env["CARGO_TARGET_DIR"] || join(REPO, "target");
  if (!isAbsolute(target)) target = join(REPO, target);
  return join(target, "debug", "daas-server");
}

function ansiblePlaybook(): string {
  return process.env["DAAS_TEST_ANSIBLE_PLAYBOOK"] || join(REPO, ".venv", "bin", "ansible-playbook");
}

/** `[limits]` of the test server: by default high enough never to be reached. */
export interface Limits {
  max_parallel_provisions: number;
  max_sessions: number;
  max_sessions_per_user: number;
  creates_per_minute: number;
  create_burst: number;
  max_streams: number;
}

const LIMITS: Limits = {
  max_parallel_provisions: 4,
  max_sessions: 100,
  max_sessions_per_user: 100,
  creates_per_minute: 1000,
  create_burst: 1000,
  max_streams: 1000,
};

/** How long a replica's hold on a session lasts unless renewed: another
 * takes a dead one's session over once it runs out. */
export const LEASE = "2s";

/** The URL of a new schema of its own in the test PostgreSQL. */
function postgresSchema(): string {
  let url = process.env["DAAS_TEST_POSTGRES"];
  if (!url) {
    const dir = join(tmpdir(), "daas-test-postgres");
    url = execFileSync(join(REPO, "scripts", "postgres.sh"), ["ensure", dir], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    }).trim();
  }
  const psql = join(process.env["DAAS_POSTGRES_BIN"] || "/usr/lib/postgresql/15/bin", "psql");
  const schema = `t${randomUUID().replace(/-/g, "")}`;
  execFileSync(psql, [url, "-v", "ON_ERROR_STOP=1", "-qc", `CREATE SCHEMA ${schema}`], { stdio: "pipe" });
  return `${url}&options=-csearch_path%3D${schema}`;
}

/** TOML basic strings escape like JSON strings. */
const toml = (value: string): string => JSON.stringify(value);

function writeConfig(dir: string, pki: string, limits: Limits, bootWait: string, extra: string): string {
  const markers = join(dir, "markers");
  mkdirSync(markers);
  const limitsToml = Object.entries(limits)
    .map(([key, value]) => `${key} = ${value}\n`)
    .join("");
  const text = `listen = "127.0.0.1:0"
data_dir = ${toml(join(dir, "data"))}

[limits]
${limitsToml}

[tls]
ca = ${toml(join(pki, "ca.pem"))}
cert = ${toml(join(pki, "server.pem"))}
key = ${toml(join(pki, "server-key.pem"))}

[terraform]
module_dir = ${toml(join(REPO, "terraform", "test"))}
init_timeout = "2m"
apply_timeout = "2m"
destroy_timeout = "2m"

[terraform.variables]
# A create takes a moment, so a test can leave a stream half-way.
create_delay_seconds = 1
# "ssh": nothing answers, so a session stays in BOOTING.
boot_wait = ${toml(bootWait)}
marker_dir = ${toml(markers)}

[boot]
timeout = "1m"

[ansible]
binary = ${toml(ansiblePlaybook())}
playbook = ${toml(join(REPO, "ansible", "playbooks", "test-desktop.yml"))}
teardown_playbook = ${toml(join(REPO, "ansible", "playbooks", "test-teardown.yml"))}
connection = "local"
timeout = "3m"

[ansible.extra_vars]
marker_dir = ${toml(markers)}
${extra}`;
  const path = join(dir, "daas.toml");
  writeFileSync(path, text);
  return path;
}

export interface Credentials {
  ca: string;
  cert: string;
  key: string;
}

/** The binary, a server folder with a fresh PKI, and its config. */
function prepare(
  limits: Partial<Limits>,
  bootWait: string,
  extra = "",
): { binary: string; dir: string; config: string } {
  const binary = serverBinary();
  if (!existsSync(binary)) {
    throw new Error(`${binary} is missing: run \`cargo build -p daas-server\` first`);
  }
  if (!existsSync(ansiblePlaybook())) {
    throw new Error(`${ansiblePlaybook()} is missing: run scripts/setup.sh first`);
  }
  const dir = mkdtempSync(join(tmpdir(), "daas-ts-"));
  const pki = join(dir, "pki");
  execFileSync(binary, ["pki", "init", "--dir", pki], { stdio: "pipe" });
  return { binary, dir, config: writeConfig(dir, pki, { ...LIMITS, ...limits }, bootWait, extra) };
}

/** A server process of `config` and its endpoint, once it listens. */
async function serve(binary: string, config: string, logPath: string): Promise<{ endpoint: string; child: ChildProcess }> {
  const child = spawn(binary, ["--config", config], {
    stdio: ["ignore", "pipe", openSync(logPath, "w")],
  });
  const lines = createInterface({ input: child.stdout! });
  const first = await new Promise<string | undefined>((resolveLine) => {
    const timer = setTimeout(() => resolveLine(undefined), 30_000);
    lines.once("line", (line) => {
      clearTimeout(timer);
      resolveLine(line);
    });
    child.once("exit", () => {
      clearTimeout(timer);
      resolveLine(undefined);
    });
  });
  // Keep reading stdout so the server never blocks on a full pipe.
  lines.on("line", () => undefined);
  if (first === undefined || !first.startsWith(LISTENING)) {
    child.kill("SIGKILL");
    const log = readFileSync(logPath, "utf8").slice(-4000);
    throw new Error(`daas-server did not start (first line ${JSON.stringify(first)}); its log:\n${log}`);
  }
  return { endpoint: `https://${first.slice(LISTENING.length)}`, child };
}

/** Stops a server process (SIGTERM, then SIGKILL after 30 s) unless it is gone. */
async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((done) => child.once("exit", () => done()));
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

/** A client certificate for `user` (in `groups`) from the CA in `pki`
 * (issued on first use). */
function credentialsIn(
  binary: string,
  pki: string,
  user: string,
  admin: boolean,
  groups: readonly string[] = [],
): Credentials {
  const cert = join(pki, "users", `${user}.pem`);
  const key = join(pki, "users", `${user}-key.pem`);
  if (!existsSync(cert)) {
    const args = ["pki", "issue", "--dir", pki, "--user", user, ...(admin ? ["--admin"] : [])];
    execFileSync(binary, [...args, ...groups.flatMap((g) => ["--group", g])], { stdio: "pipe" });
  }
  return { ca: join(pki, "ca.pem"), cert, key };
}

/** An organisation for the members of group `physics`, administered by
 * those of `physics-admins`: two desktops of the default size (2 cores,
 * 4 GiB) in all, one a member. */
export const PHYSICS = `
[orgs.physics]
title = "Physics"
groups = ["physics"]
admin_groups = ["physics-admins"]

[orgs.physics.quota]
desktops = 2
cores = 4
memory_gb = 8

[orgs.physics.user_quota]
desktops = 1
`;

/** A catalog with a persistent template, `notes`: its desktops keep their
 * disk when destroyed (the test module's hooks keep it), for the next `notes`
 * desktop of their user. */
export const NOTES = `
[templates.debian-12-xfce]
[templates.notes]
persistent = true
`;

/** A running server: its endpoint and its PKI. Stop it with stop(). */
export class TestServer {
  private constructor(
    readonly endpoint: string,
    readonly dir: string,
    private readonly binary: string,
    private readonly child: ChildProcess,
  ) {}

  /** Starts a server; `limits` overrides some of the default `[limits]`,
   * `extra` is added to its config (e.g. PHYSICS + NOTES). */
  static async start(limits: Partial<Limits> = {}, extra = ""): Promise<TestServer> {
    const { binary, dir, config } = prepare(limits, "none", extra);
    const { endpoint, child } = await serve(binary, config, join(dir, "server.log"));
    return new TestServer(endpoint, dir, binary, child);
  }

  get pki(): string {
    return join(this.dir, "pki");
  }

  /** A client certificate for `user` (in `groups`) from the server's CA
   * (issued on first use). */
  credentials(user: string, admin = false, groups: readonly string[] = []): Credentials {
    return credentialsIn(this.binary, this.pki, user, admin, groups);
  }

  /** A client connected as `user` (in `groups`); the server certificate
   * names localhost. */
  client(user: string, admin = false, groups: readonly string[] = []): Promise<DaasClient> {
    const { ca, cert, key } = this.credentials(user, admin, groups);
    return DaasClient.fromFiles(this.endpoint, ca, cert, key, { serverName: "localhost" });
  }

  /** Stops the server (SIGTERM, then SIGKILL after 30 s) and removes its dir. */
  async stop(): Promise<void> {
    await stopProcess(this.child);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** One server process of a store another serves too. */
export class Replica {
  constructor(
    readonly endpoint: string,
    private readonly child: ChildProcess,
  ) {}

  /** SIGKILL: the process dies mid-call, its connections with it. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise<void>((done) => this.child.once("exit", () => done()));
      this.child.kill("SIGKILL");
      await exited;
    }
  }

  /** @internal */
  stop(): Promise<void> {
    return stopProcess(this.child);
  }
}

/** Two server processes on one PostgreSQL schema, each with a data folder
 * of its own. Stop them with stop(). */
export class TestReplicas {
  private constructor(
    readonly a: Replica,
    readonly b: Replica,
    readonly dir: string,
    private readonly binary: string,
  ) {}

  /** Starts both, and returns once each answers (after its start-up, which
   * fails sessions another process left in progress: none is created
   * before). `bootWait` "ssh" keeps sessions in BOOTING. */
  static async start(bootWait: "none" | "ssh" = "none"): Promise<TestReplicas> {
    const store = `\n[store]\nurl = ${toml(postgresSchema())}\nlease = ${toml(LEASE)}\n`;
    const { binary, dir, config } = prepare({}, bootWait, store);
    // B: the same, with a data folder of its own.
    const data = toml(join(dir, "data"));
    const text = readFileSync(config, "utf8");
    if (!text.includes(data)) throw new Error(`no ${data} in ${text}`);
    const configB = join(dir, "daas-b.toml");
    writeFileSync(configB, text.replace(data, toml(join(dir, "data-b"))));
    const a = await serve(binary, config, join(dir, "a.log"));
    const b = await serve(binary, configB, join(dir, "b.log"));
    const replicas = new TestReplicas(new Replica(a.endpoint, a.child), new Replica(b.endpoint, b.child), dir, binary);
    for (const endpoint of [a.endpoint, b.endpoint]) {
      const client = await replicas.client("root", [endpoint]);
      try {
        await client.list();
      } finally {
        client.close();
      }
    }
    return replicas;
  }

  /** A client connected as `user` to `endpoints`, tried in order. */
  client(user: string, endpoints: string | string[]): Promise<DaasClient> {
    const { ca, cert, key } = credentialsIn(this.binary, join(this.dir, "pki"), user, false);
    return DaasClient.fromFiles(endpoints, ca, cert, key, { serverName: "localhost" });
  }

  /** Stops both (those not killed) and removes their folder. */
  async stop(): Promise<void> {
    await Promise.all([this.a.stop(), this.b.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
