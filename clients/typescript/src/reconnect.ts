import { type Backoff, withJitter } from "./backoff.js";
import { CLOSE_CODES } from "./generated/wire.js";
import type { SocketClosed } from "./socket.js";

/** What to do after a connection ended. */
export interface ReconnectPlan {
  delayMs: number;
  /** Ask `getToken()` for a new token first. */
  token: "fresh" | "same";
  /** Try the next of the socket URLs. */
  url: "next" | "same";
}

/** Least wait after close 4008 (rate-limit abuse): the protocol asks for several seconds. */
const ABUSE_BACKOFF_MS = 5000;

/**
 * The reconnect policy of protocol §5 and §10: after `goaway`, wait as told (plus jitter) and
 * move to another node; after 4001, get a fresh token; after 4008, back off for seconds; any
 * other end (4009, 1000 idle timeout, a dropped or refused connection), jittered exponential
 * backoff. A connection refused before `welcome` with an expired token also gets a new one.
 */
export function planReconnect(
  closed: SocketClosed,
  goawayMs: number | undefined,
  tokenExpired: boolean,
  backoff: Backoff,
): ReconnectPlan {
  if (goawayMs !== undefined) {
    return { delayMs: withJitter(goawayMs), token: "same", url: "next" };
  }
  if (closed.code === CLOSE_CODES.TokenInvalid) {
    return { delayMs: 0, token: "fresh", url: "same" };
  }
  const token = !closed.welcomed && tokenExpired ? "fresh" : "same";
  if (closed.code === CLOSE_CODES.RateLimitAbuse) {
    return { delayMs: Math.max(ABUSE_BACKOFF_MS, backoff.next()), token, url: "same" };
  }
  return { delayMs: backoff.next(), token, url: closed.welcomed ? "same" : "next" };
}
