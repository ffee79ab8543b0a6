import type { ConversationId, Message } from "./generated/wire.js";

/** How often `typing()` really sends `typing.start` while the user keeps typing; the protocol
 * asks for one every few seconds, and receivers hide the indicator after about 6 s. */
export const TYPING_INTERVAL_MS = 3000;

/** Throttles `typing.start` per conversation. */
export class TypingThrottle {
  private readonly lastSent = new Map<ConversationId, number>();

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether a `typing.start` is due now (and records it as sent). */
  due(conversationId: ConversationId): boolean {
    const last = this.lastSent.get(conversationId);
    const now = this.now();
    if (last !== undefined && now - last < TYPING_INTERVAL_MS) return false;
    this.lastSent.set(conversationId, now);
    return true;
  }

  /** After `typing.stop`, the next keystroke sends `typing.start` at once. */
  stopped(conversationId: ConversationId): void {
    this.lastSent.delete(conversationId);
  }
}

export interface HistoryPage {
  messages: Message[];
  has_more: boolean;
}

export type FetchPage = (beforeSeq: number | undefined) => Promise<HistoryPage>;

/** Scroll-back: each `older()` returns the page before the oldest message returned so far. */
export class HistoryPager {
  private oldest: number | undefined;
  private finished = false;

  constructor(private readonly fetchPage: FetchPage) {}

  /** Whether seq 1 has been reached. */
  get done(): boolean {
    return this.finished;
  }

  async older(): Promise<Message[]> {
    if (this.finished) return [];
    const page = await this.fetchPage(this.oldest);
    const first = page.messages[0];
    if (first) this.oldest = first.seq;
    this.finished = !page.has_more || first === undefined;
    return page.messages;
  }
}

/** The `exp` claim of a JWT, in ms since the epoch; undefined when it cannot be read. The
 * token is not verified here: the server does that. */
export function tokenExpiry(token: string): number | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const exp = (JSON.parse(json) as { exp?: unknown }).exp;
    return typeof exp === "number" ? exp * 1000 : undefined;
  } catch {
    return undefined;
  }
}

/** A random `client_msg_id` (UUID v4 where `crypto.randomUUID` exists). */
export function newClientMsgId(): string {
  const random = globalThis.crypto?.randomUUID?.bind(globalThis.crypto);
  if (random) return random();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}
