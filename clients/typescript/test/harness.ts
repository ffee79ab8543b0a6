/**
 * Starts real `parley-server` processes (and a private Redis through the project's
 * scripts/services/redis.sh) for the SDK tests, like server/tests/common does for the Rust ones.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import {
  type ConnectOptions,
  connect,
  type Message,
  memoryStorage,
  type ParleyClient,
} from "../src/index.js";

export const API_KEY = "sdk-test-api-key-0123456789";
const JWT_SECRET = "sdk-test-jwt-secret-0123456789-0123456789";
/** The node's public development API key (config/parley.toml), in use when none is set. */
const DEV_API_KEY = "parley-dev-api-key";

/** Test secrets, or none: the public development defaults (which offer the dev token route
 * when the web chat is served). */
export type Secrets = "test" | "development";
/** The repository: the nearest directory above this file holding scripts/services/. */
export const REPO = findRepo(fileURLToPath(import.meta.url));

function findRepo(from: string): string {
  for (let dir = resolve(from, ".."); dir !== resolve(dir, ".."); dir = resolve(dir, "..")) {
    if (existsSync(join(dir, "scripts/services/redis.sh"))) return dir;
  }
  throw new Error(`no repository above ${from}`);
}

/** The debug binary: $PARLEY_SERVER_BIN, $CARGO_TARGET_DIR/debug, or the repo's target/. */
export function serverBinary(): string {
  const candidates = [
    process.env.PARLEY_SERVER_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, "debug/parley-server"),
    join(REPO, "target/debug/parley-server"),
  ];
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) throw new Error(`parley-server not built (looked at ${candidates.join(", ")})`);
  return found;
}

/** What the tests of one file started, for `cleanUp()`. */
const started: { nodes: TestNode[]; redis: TestRedis[]; clients: ParleyClient[]; dirs: string[] } =
  { nodes: [], redis: [], clients: [], dirs: [] };

/** Closes the clients, stops the nodes and Redis; at exit, removes their directories, or, when
 * a test failed, keeps them and prints the tail of each node's log. Use as `after(cleanUp)`. */
export async function cleanUp(): Promise<void> {
  for (const each of started.clients) each.close();
  for (const node of started.nodes) await node.kill9();
  for (const redis of started.redis) redis.stop();
}

process.on("exit", () => {
  const failed = (process.exitCode ?? 0) !== 0;
  for (const node of failed ? started.nodes : []) {
    console.error(`----- parley-server log (${node.dir}) -----\n${node.log().slice(-4000)}`);
  }
  for (const dir of failed ? [] : started.dirs) rmSync(dir, { recursive: true, force: true });
});

function temporaryDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  started.dirs.push(dir);
  return dir;
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  limitMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((done) => setTimeout(done, 20));
  }
}

/** One node on a fixed port and data dir, so it can be killed and started again in place. */
export class TestNode {
  private child: ChildProcess | undefined;
  readonly dir = temporaryDir("parley-sdk-");

  private constructor(
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly secrets: Secrets,
  ) {}

  static async start(
    env: Record<string, string> = {},
    secrets: Secrets = "test",
  ): Promise<TestNode> {
    const node = new TestNode(await freePort(), env, secrets);
    started.nodes.push(node);
    await node.spawn();
    return node;
  }

  get http(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get socketUrl(): string {
    return `ws://127.0.0.1:${this.port}/ws`;
  }

  async spawn(): Promise<void> {
    const log = openSync(join(this.dir, "server.log"), "a");
    this.child = spawn(serverBinary(), [], {
      env: {
        PATH: process.env.PATH ?? "",
        PARLEY__SERVER__BIND: `127.0.0.1:${this.port}`,
        PARLEY__SERVER__WORKERS: "2",
        PARLEY__STORAGE__DATA_DIR: join(this.dir, "data"),
        ...(this.secrets === "test"
          ? { PARLEY__AUTH__API_KEY: API_KEY, PARLEY__AUTH__JWT_SECRET: JWT_SECRET }
          : {}),
        PARLEY__LOG__LEVEL: "info",
        PARLEY__RATE_LIMIT__PER_SECOND: "10000",
        PARLEY__RATE_LIMIT__BURST: "10000",
        ...this.env,
      },
      stdio: ["ignore", "pipe", log],
    });
    closeSync(log);
    const lines = createInterface({ input: this.child.stdout as NodeJS.ReadableStream });
    const first = await new Promise<string>((done) => {
      lines.once("line", done);
      this.child?.once("exit", () => done(""));
    });
    lines.on("line", () => undefined);
    if (!first.startsWith("parley-server listening on")) {
      throw new Error(`parley-server did not start:\n${this.log()}`);
    }
    await this.waitReady();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      const status = await fetch(`${this.http}/readyz`).then(
        (response) => response.status,
        () => 0,
      );
      if (status === 200) return;
      await new Promise((done) => setTimeout(done, 50));
    }
    throw new Error(`parley-server never became ready:\n${this.log()}`);
  }

  /** The value of a counter or gauge of `/metrics` (summed over its series), 0 when absent. */
  async metric(name: string): Promise<number> {
    const text = await fetch(`${this.http}/metrics`).then((response) => response.text());
    return text
      .split("\n")
      .filter((line) => line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      .reduce((sum, line) => sum + Number(line.split(" ").at(-1)), 0);
  }

  log(): string {
    return readFileSync(join(this.dir, "server.log"), "utf8");
  }

  /** kill -9: no shutdown code runs. */
  async kill9(): Promise<void> {
    await this.signal("SIGKILL");
  }

  /** SIGTERM: the node drains (goaway to every session) and exits. */
  async terminate(): Promise<void> {
    await this.signal("SIGTERM");
  }

  /** SIGSTOP / SIGCONT: the node is frozen (connections stay open, nothing is answered). */
  freeze(): void {
    this.child?.kill("SIGSTOP");
  }

  thaw(): void {
    this.child?.kill("SIGCONT");
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((done) => child.once("exit", done));
    child.kill(signal);
    await exited;
    this.child = undefined;
  }

  /** A POST to the app-backend API (with the API key); the JSON answer. */
  async api(path: string, body: unknown): Promise<unknown> {
    const response = await fetch(`${this.http}/api/v1${path}`, {
      method: "POST",
      headers: {
        "X-Api-Key": this.secrets === "test" ? API_KEY : DEV_API_KEY,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
    return response.json();
  }

  async token(userId: string, ttlSecs?: number): Promise<string> {
    const reply = await this.api("/auth/token", { user_id: userId, ttl_secs: ttlSecs });
    return (reply as { token: string }).token;
  }
}

/** A private Redis started by the project's own service script. */
export class TestRedis {
  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<TestRedis> {
    const redis = new TestRedis(await freePort(), temporaryDir("parley-redis-"));
    started.redis.push(redis);
    execFileSync(join(REPO, "scripts/services/redis.sh"), ["start", redis.dir, String(redis.port)]);
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  stop(): void {
    execFileSync(join(REPO, "scripts/services/redis.sh"), ["stop", this.dir]);
  }
}

/** A client's network, which a test can cut: while it is down, the client's connection
 * attempts go to a closed port and fail, whatever state the nodes are in. */
export class Network {
  private up = true;
  private readonly sockets: WebSocket[] = [];

  /** A WebSocket class (the `ws` package's) whose connections go through this network. */
  readonly WebSocket: ConnectOptions["WebSocket"];

  constructor() {
    const network = this;
    this.WebSocket = class extends WebSocket {
      constructor(url: string) {
        super(network.up ? url : "ws://127.0.0.1:1/ws");
        network.sockets.push(this);
      }
    } as unknown as ConnectOptions["WebSocket"];
  }

  cut(): void {
    this.up = false;
  }

  restore(): void {
    this.up = true;
  }

  /** The client stops reading its connections (the server's writes pile up). */
  stall(): void {
    for (const socket of this.sockets) socket.pause();
  }

  /** The client reads again. */
  unstall(): void {
    for (const socket of this.sockets) socket.resume();
  }
}

/** An SDK client for `userId` on the given nodes, with `ws` as its WebSocket. */
export function client(
  nodes: TestNode[],
  userId: string,
  options: Partial<ConnectOptions> = {},
): ParleyClient {
  const sdk = connect({
    socketUrls: nodes.map((node) => node.socketUrl),
    getToken: () => anyToken(nodes, userId),
    storage: memoryStorage(),
    WebSocket: WebSocket as unknown as ConnectOptions["WebSocket"],
    backoff: { initialMs: 100, maxMs: 1000 },
    ...options,
  });
  started.clients.push(sdk);
  return sdk;
}

/** A token from the first node that answers (any node's token works on every node). */
export async function anyToken(
  nodes: TestNode[],
  userId: string,
  ttlSecs?: number,
): Promise<string> {
  let failure: unknown;
  for (const node of nodes) {
    try {
      return await node.token(userId, ttlSecs);
    } catch (error) {
      failure = error;
    }
  }
  throw failure;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms));
}

/** Collects the messages the app receives in one conversation. */
export function collect(client: ParleyClient, conversationId: string): Message[] {
  const seen: Message[] = [];
  client.on("message", (message) => {
    if (message.conversation_id === conversationId) seen.push(message);
  });
  return seen;
}

/** Creates a group of `owner` with `members`; returns its id. */
export async function group(owner: ParleyClient, members: string[]): Promise<string> {
  const { conversation } = await owner.request("conversation.create", { kind: "group", members });
  return conversation.conversation_id;
}

export function numbered(count: number, prefix = "m"): string[] {
  return Array.from({ length: count }, (_, index) => `${prefix}${index + 1}`);
}
