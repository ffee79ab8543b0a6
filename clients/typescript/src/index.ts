export { httpBase, type UploadOptions } from "./attachments.js";
export { type BackoffOptions, DEFAULT_BACKOFF } from "./backoff.js";
export {
  type ClientEvents,
  type ConnectionState,
  type ConnectOptions,
  connect,
  ParleyClient,
} from "./client.js";
export { NoReplyError, type NoReplyReason, ParleyError } from "./errors.js";
export * from "./generated/wire.js";
export { HistoryPager, TYPING_INTERVAL_MS } from "./helpers.js";
export type { MessageState, OutgoingMessage } from "./outbox.js";
export type { SocketClosed, WebSocketConstructor, WebSocketLike } from "./socket.js";
export { type KeyValueStorage, memoryStorage } from "./storage.js";
