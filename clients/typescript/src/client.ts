import {
  downloadAttachment,
  httpBase,
  type UploadOptions,
  uploadAttachment,
} from "./attachments.js";
import { Backoff, type BackoffOptions, DEFAULT_BACKOFF, sleep } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { NoReplyError } from "./errors.js";
import {
  type AttachmentId,
  CLOSE_CODES,
  type ConversationId,
  type Message,
  type OpArgs,
  type OpName,
  type OpResults,
  type PresenceInfo,
  type ServerEvent,
  type UserId,
  type Welcome,
} from "./generated/wire.js";
import { HistoryPager, newClientMsgId, TypingThrottle, tokenExpiry } from "./helpers.js";
import { Outbox, type OutgoingMessage } from "./outbox.js";
import { planReconnect } from "./reconnect.js";
import { discover, syncConversations } from "./resume.js";
import { Socket, type SocketClosed, type WebSocketConstructor } from "./socket.js";
import { type KeyValueStorage, memoryStorage, StoredValue } from "./storage.js";
import { Timeline } from "./timeline.js";

export interface ConnectOptions {
  /** WebSocket URLs of the nodes (the `socket_urls` of a token reply), tried in turn. */
  socketUrls?: string[];
  /** One WebSocket URL, when there is a single node or a load balancer. */
  url?: string;
  /** Returns a token; called at start, after close 4001 and when the token has expired. */
  getToken: () => Promise<string> | string;
  /** Where last seen seqs and unsent messages are kept (default: memory). */
  storage?: KeyValueStorage;
  /** The WebSocket class (default: the global one; pass `ws`'s in Node 20). */
  WebSocket?: WebSocketConstructor;
  /** How long a request waits for its reply (default 10 s). */
  requestTimeoutMs?: number;
  backoff?: BackoffOptions;
  /** Send `receipt.delivered` for other users' messages as they arrive (default "auto"). */
  deliveredReceipts?: "auto" | "manual";
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "closed";

type EventData<Name extends ServerEvent["ev"]> = Extract<ServerEvent, { ev: Name }>["data"];
type PassedEvents = {
  [Name in Exclude<ServerEvent["ev"], "message.new" | "welcome">]: EventData<Name>;
};

export interface ClientEvents extends PassedEvents {
  /** The connection's state changed ("reconnecting" is the moment to show a banner). */
  state: ConnectionState;
  /** A new message, once each, in seq order per conversation (live or caught up by `sync`). */
  message: Message;
  /** A message sent with `send()` changed state. */
  "message.state": OutgoingMessage;
  welcome: Welcome;
  /** A connection ended (before the SDK reconnects): its close code and reason, and whether
   * the server had welcomed it. */
  disconnected: SocketClosed;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const DELIVERED_DEBOUNCE_MS = 300;

/** A Parley connection that stays up: see `connect()`. */
export class ParleyClient extends Emitter<ClientEvents> {
  private readonly urls: string[];
  private readonly storage: KeyValueStorage;
  private readonly backoff: Backoff;
  private readonly WebSocketClass: WebSocketConstructor;
  /** The connected socket, once welcomed. */
  private socket: Socket | undefined;
  /** The socket being opened or in use (closed by `close()` even before `welcome`). */
  private live: Socket | undefined;
  private currentState: ConnectionState = "connecting";
  private token = "";
  private urlIndex = 0;
  private goawayMs: number | undefined;
  private me: UserId | undefined;
  private timeline: Timeline | undefined;
  private outbox: Outbox | undefined;
  private readonly waiters = new Set<(connected: boolean) => void>();
  private readonly deliveredDue = new Map<ConversationId, number>();
  private deliveredTimer: ReturnType<typeof setTimeout> | undefined;
  private gapFill: Promise<void> | undefined;
  private readonly typingThrottle = new TypingThrottle();

  constructor(private readonly options: ConnectOptions) {
    super();
    this.urls = options.socketUrls ?? (options.url ? [options.url] : []);
    if (this.urls.length === 0) throw new Error("connect() needs `socketUrls` or `url`");
    const Ctor =
      options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!Ctor) throw new Error("no global WebSocket: pass one as `WebSocket`");
    this.WebSocketClass = Ctor;
    this.storage = options.storage ?? memoryStorage();
    this.backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
    void this.run();
  }

  get state(): ConnectionState {
    return this.currentState;
  }

  /** The signed-in user, once welcomed. */
  get userId(): UserId | undefined {
    return this.me;
  }

  /** Resolves once connected and caught up (at once when already so); rejects once closed. */
  ready(): Promise<void> {
    if (this.currentState === "connected") return Promise.resolve();
    if (this.currentState === "closed") return Promise.reject(new Error("client closed"));
    return new Promise((resolve, reject) =>
      this.waiters.add((connected) => (connected ? resolve() : reject(new Error("client closed")))),
    );
  }

  /** Whether the connection is up within `timeoutMs`. */
  private readyWithin(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), timeoutMs);
      this.ready().then(
        () => {
          clearTimeout(timer);
          resolve(true);
        },
        () => {
          clearTimeout(timer);
          resolve(false);
        },
      );
    });
  }

  /** Sends a request; waits for the connection first if it is down. A request that gets no
   * reply fails with `NoReplyError` and is not retried (sends go through `send()`). */
  async request<Op extends OpName>(op: Op, args: OpArgs[Op]): Promise<OpResults[Op]> {
    const timeout = this.options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (this.currentState !== "connected" && !(await this.readyWithin(timeout))) {
      throw new NoReplyError(op, "timeout");
    }
    const socket = this.socket;
    if (!socket) throw new NoReplyError(op, "closed");
    return socket.request(op, args, timeout);
  }

  /** Queues a message: it gets its `client_msg_id` now and is sent until acknowledged, across
   * reconnects. Follow its state with `on("message.state")`. */
  send(
    conversationId: ConversationId,
    text: string,
    replyTo?: string,
    attachments?: AttachmentId[],
  ): OutgoingMessage {
    const outbox = this.requireOutbox();
    const clientMsgId = newClientMsgId();
    const message = outbox.add({
      conversation_id: conversationId,
      client_msg_id: clientMsgId,
      text,
      reply_to: replyTo,
      attachments,
    });
    this.flushOutbox();
    return message;
  }

  /** Uploads a file for a later `send()` (protocol v1.1 attachments); returns its id. */
  async upload(bytes: Uint8Array, options: UploadOptions): Promise<AttachmentId> {
    return uploadAttachment(this.httpBase(), await this.currentToken(), bytes, options);
  }

  /** Downloads an attachment of a message this user can see. */
  async download(attachmentId: AttachmentId): Promise<Uint8Array> {
    return downloadAttachment(this.httpBase(), await this.currentToken(), attachmentId);
  }

  /** Messages queued and not yet acknowledged. */
  pendingMessages(): readonly OutgoingMessage[] {
    return this.outbox?.pending() ?? [];
  }

  /** The last seq applied without a gap in a conversation (what `sync` will ask from). */
  lastSeq(conversationId: ConversationId): number | undefined {
    return this.timeline?.lastSeq(conversationId);
  }

  /** Call on every keystroke: sends `typing.start` at most every 3 s per conversation. */
  typing(conversationId: ConversationId): void {
    if (!this.typingThrottle.due(conversationId)) return;
    this.request("typing.start", { conversation_id: conversationId }).catch(() => undefined);
  }

  /** The user stopped typing (sent, or cleared the input). */
  stopTyping(conversationId: ConversationId): void {
    this.typingThrottle.stopped(conversationId);
    this.request("typing.stop", { conversation_id: conversationId }).catch(() => undefined);
  }

  /** Raises the read watermark (and the delivered one) to `seq`. */
  async markRead(conversationId: ConversationId, seq: number): Promise<void> {
    await this.request("receipt.read", { conversation_id: conversationId, seq });
  }

  async presence(userIds: UserId[]): Promise<Record<UserId, PresenceInfo>> {
    const result = await this.request("presence.get", { user_ids: userIds });
    return result.presence as Record<UserId, PresenceInfo>;
  }

  /** Scroll-back through a conversation, newest page first. */
  history(conversationId: ConversationId, pageSize = 50): HistoryPager {
    return new HistoryPager((before_seq) =>
      this.request("history.get", { conversation_id: conversationId, before_seq, limit: pageSize }),
    );
  }

  /** Closes for good. */
  close(): void {
    this.setState("closed");
    this.live?.close();
  }

  private isClosed(): boolean {
    return this.currentState === "closed";
  }

  /** The HTTP address of the node this client uses (or last used). */
  private httpBase(): string {
    return httpBase(this.urls[this.urlIndex % this.urls.length] as string);
  }

  /** The socket's token, or a fresh one when it has expired. */
  private async currentToken(): Promise<string> {
    const expiry = tokenExpiry(this.token);
    if (this.token === "" || (expiry !== undefined && expiry <= Date.now())) {
      this.token = await this.freshToken();
    }
    return this.token;
  }

  private requireOutbox(): Outbox {
    if (!this.outbox) throw new Error("send() before the first `welcome`: await ready() first");
    return this.outbox;
  }

  private async run(): Promise<void> {
    this.token = await this.freshToken();
    while (!this.isClosed()) {
      const url = this.urls[this.urlIndex % this.urls.length] as string;
      const closed = await this.connectOnce(url);
      if (this.isClosed()) return;
      this.emit("disconnected", closed);
      if (closed.code === CLOSE_CODES.Kicked) {
        // An operator disconnected or banned this user (protocol §10): reconnecting would undo
        // the kick or be refused. The app decides what to tell the user and whether to connect
        // again later.
        this.close();
        return;
      }
      const expiry = tokenExpiry(this.token);
      const expired = expiry !== undefined && expiry <= Date.now();
      const plan = planReconnect(closed, this.goawayMs, expired, this.backoff);
      this.goawayMs = undefined;
      this.setState("reconnecting");
      await sleep(plan.delayMs);
      if (plan.url === "next") this.urlIndex += 1;
      if (plan.token === "fresh") this.token = await this.freshToken();
    }
  }

  /** `getToken()`, retried with backoff while it fails (for example while the backend is down). */
  private async freshToken(): Promise<string> {
    for (;;) {
      try {
        return await this.options.getToken();
      } catch {
        await sleep(this.backoff.next());
      }
    }
  }

  private connectOnce(url: string): Promise<SocketClosed> {
    const separator = url.includes("?") ? "&" : "?";
    const address = `${url}${separator}token=${encodeURIComponent(this.token)}`;
    return new Promise((resolve) => {
      const socket = new Socket(this.WebSocketClass, address, {
        onWelcome: (welcome) => void this.welcomed(socket, welcome),
        onEvent: (event) => this.dispatch(event),
        onClose: (closed) => {
          if (this.socket === socket) this.socket = undefined;
          if (this.live === socket) this.live = undefined;
          resolve(closed);
        },
      });
      this.live = socket;
    });
  }

  /** After `welcome`: load this user's state, catch up, then flush the outbox. */
  private async welcomed(socket: Socket, welcome: Welcome): Promise<void> {
    this.openState(welcome.user_id);
    this.socket = socket;
    this.emit("welcome", welcome);
    const timeline = this.timeline as Timeline;
    const request = this.socketRequester(socket);
    try {
      await discover(request, timeline);
      await syncConversations(request, timeline, Object.keys(timeline.snapshot()));
    } catch {
      socket.close(4000, "resume failed");
      return;
    }
    this.backoff.reset();
    this.setState("connected");
    this.flushOutbox();
  }

  private openState(userId: UserId): void {
    if (this.me === userId) return;
    this.me = userId;
    const prefix = `parley:${userId}:`;
    this.timeline = new Timeline(new StoredValue(this.storage, `${prefix}seqs`), (message) =>
      this.delivered(message),
    );
    this.outbox = new Outbox(new StoredValue(this.storage, `${prefix}outbox`), (message) =>
      this.emit("message.state", message),
    );
  }

  private socketRequester(socket: Socket) {
    const timeout = this.options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    return <Op extends OpName>(op: Op, args: OpArgs[Op]) => socket.request(op, args, timeout);
  }

  /** Sends the outbox over whichever connection is up when each attempt is made (a retry
   * waiting out `retry_after_ms` goes over the connection that replaced the one it began on). */
  private flushOutbox(): void {
    if (!this.socket || this.currentState !== "connected" || !this.outbox) return;
    const timeout = this.options.requestTimeoutMs ?? DEFAULT_TIMEOUT_MS;
    void this.outbox.flush((args) => {
      const socket = this.socket;
      if (!socket) return Promise.reject(new NoReplyError("message.send", "disconnected"));
      return socket.request("message.send", args, timeout);
    });
  }

  private dispatch(event: ServerEvent): void {
    switch (event.ev) {
      case "message.new":
        this.incoming(event.data.message);
        return;
      case "message.stored":
        this.outbox?.markStored(event.data.message_id);
        break;
      case "receipt.updated": {
        const { conversation_id, user_id, delivered_seq, read_seq } = event.data;
        this.outbox?.receipt(conversation_id, user_id, this.me ?? "", delivered_seq, read_seq);
        break;
      }
      case "member.joined":
        this.timeline?.adopt(event.data.conversation_id, event.data.conversation.last_seq);
        break;
      case "member.left":
        if (this.me && event.data.user_ids.includes(this.me)) {
          this.timeline?.forget(event.data.conversation_id);
        }
        break;
      case "goaway":
        this.goawayMs = event.data.reconnect_after_ms;
        break;
    }
    this.emitPassed(event);
  }

  private emitPassed(event: ServerEvent): void {
    const { ev, data } = event as { ev: keyof PassedEvents; data: never };
    this.emit(ev, data);
  }

  /** A live `message.new`: applied in order, or held while the gap before it is filled. */
  private incoming(message: Message): void {
    const timeline = this.timeline;
    if (timeline?.accept(message) !== "waiting") return;
    this.fillGaps(message.conversation_id);
  }

  private fillGaps(conversationId: ConversationId): void {
    const socket = this.socket;
    const timeline = this.timeline;
    if (this.gapFill || !socket || !timeline) return;
    const request = this.socketRequester(socket);
    this.gapFill = syncConversations(request, timeline, [conversationId])
      .catch(() => undefined)
      .finally(() => {
        this.gapFill = undefined;
      });
  }

  private delivered(message: Message): void {
    this.emit("message", message);
    if (message.sender_id === this.me || this.options.deliveredReceipts === "manual") return;
    this.deliveredDue.set(message.conversation_id, message.seq);
    this.deliveredTimer ??= setTimeout(() => this.sendDelivered(), DELIVERED_DEBOUNCE_MS);
  }

  private sendDelivered(): void {
    this.deliveredTimer = undefined;
    for (const [conversation_id, seq] of this.deliveredDue) {
      this.request("receipt.delivered", { conversation_id, seq }).catch(() => undefined);
    }
    this.deliveredDue.clear();
  }

  private setState(state: ConnectionState): void {
    if (this.currentState === state || this.currentState === "closed") return;
    this.currentState = state;
    this.emit("state", state);
    if (state !== "connected" && state !== "closed") return;
    for (const waiter of this.waiters) waiter(state === "connected");
    this.waiters.clear();
  }
}

/** Connects to Parley and stays connected until `close()`. */
export function connect(options: ConnectOptions): ParleyClient {
  return new ParleyClient(options);
}
