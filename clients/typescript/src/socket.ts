import { NoReplyError, ParleyError } from "./errors.js";
import type {
  ErrorBody,
  OpArgs,
  OpName,
  OpResults,
  ServerEvent,
  Welcome,
} from "./generated/wire.js";

/** What the SDK needs of a WebSocket: the browser's, or Node's `ws` package. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** How a connection ended. `welcomed` tells whether the server had greeted it. */
export interface SocketClosed {
  code: number;
  reason: string;
  welcomed: boolean;
}

export interface SocketHandlers {
  onWelcome(welcome: Welcome): void;
  onEvent(event: ServerEvent): void;
  onClose(closed: SocketClosed): void;
}

interface Pending {
  op: string;
  resolve(result: unknown): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

/** A failure frame; `re` is null when the server could not read the request's id. */
interface FailureFrame {
  re: number | null;
  error: ErrorBody;
}

/** One WebSocket connection: request ids, replies matched by `re`, timeouts, events. */
export class Socket {
  private readonly socket: WebSocketLike;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private welcomed = false;
  private closed = false;

  constructor(
    Ctor: WebSocketConstructor,
    url: string,
    private readonly handlers: SocketHandlers,
  ) {
    this.socket = new Ctor(url);
    this.socket.onmessage = (event) => this.receive(String(event.data));
    this.socket.onclose = (event) => this.ended(event.code, event.reason);
    this.socket.onerror = () => {
      // A failed connection also fires `close`, which reports it.
    };
  }

  request<Op extends OpName>(op: Op, args: OpArgs[Op], timeoutMs: number): Promise<OpResults[Op]> {
    if (this.closed || !this.welcomed) {
      return Promise.reject(new NoReplyError(op, "disconnected"));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new NoReplyError(op, "timeout"));
      }, timeoutMs);
      this.pending.set(id, { op, resolve: resolve as (result: unknown) => void, reject, timer });
      this.socket.send(JSON.stringify({ id, op, args }));
    });
  }

  close(code = 1000, reason = "client closed"): void {
    this.socket.close(code, reason);
    this.ended(code, reason);
  }

  private receive(text: string): void {
    let frame: Record<string, unknown>;
    try {
      frame = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return;
    }
    if ("re" in frame) {
      this.reply(frame);
    } else if (typeof frame.ev === "string") {
      this.event(frame as unknown as ServerEvent);
    }
  }

  private reply(frame: Record<string, unknown>): void {
    const id = typeof frame.re === "number" ? frame.re : null;
    const pending = id === null ? undefined : this.pending.get(id);
    if (id === null || !pending) return;
    this.pending.delete(id);
    clearTimeout(pending.timer);
    if ("error" in frame) {
      pending.reject(new ParleyError((frame as unknown as FailureFrame).error));
    } else {
      pending.resolve(frame.result);
    }
  }

  private event(event: ServerEvent): void {
    if (event.ev === "welcome") {
      this.welcomed = true;
      this.handlers.onWelcome(event.data);
    } else {
      this.handlers.onEvent(event);
    }
  }

  private ended(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const [, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(new NoReplyError(pending.op, "disconnected"));
    }
    this.pending.clear();
    this.handlers.onClose({ code, reason, welcomed: this.welcomed });
  }
}
