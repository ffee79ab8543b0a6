import type { ConversationId, OpArgs, OpName, OpResults } from "./generated/wire.js";
import type { Timeline } from "./timeline.js";

export type Requester = <Op extends OpName>(op: Op, args: OpArgs[Op]) => Promise<OpResults[Op]>;

const LIST_PAGE = 200;
const SYNC_MAX_CONVERSATIONS = 1000;
const HISTORY_PAGE = 100;

/** Most unread messages of a conversation new to the SDK that are delivered as new messages;
 * older ones are history (`history.get`). */
export const UNREAD_REPLAY_MAX = 100;

/** Starts tracking every conversation of the user (`conversation.list`, all pages) that is new
 * to the SDK, after its last read message (so what arrived while the app was away, or before
 * it knew of the conversation, is delivered), at most `UNREAD_REPLAY_MAX` back. */
export async function discover(request: Requester, timeline: Timeline): Promise<void> {
  let after: ConversationId | undefined;
  for (;;) {
    const page = await request("conversation.list", { limit: LIST_PAGE, after });
    for (const conversation of page.conversations) {
      const { conversation_id, last_seq, unread } = conversation;
      timeline.adopt(conversation_id, Math.max(last_seq - unread, last_seq - UNREAD_REPLAY_MAX, 0));
    }
    const last = page.conversations.at(-1);
    if (page.conversations.length < LIST_PAGE || !last) return;
    after = last.conversation_id;
  }
}

/** Fetches every message after the last seq applied in the given conversations (`sync` in
 * chunks of 1000, then `history.get` where a page said `has_more`); forgets conversations the
 * user no longer belongs to. */
export async function syncConversations(
  request: Requester,
  timeline: Timeline,
  ids: readonly ConversationId[],
): Promise<void> {
  for (let start = 0; start < ids.length; start += SYNC_MAX_CONVERSATIONS) {
    const chunk = ids.slice(start, start + SYNC_MAX_CONVERSATIONS);
    const conversations: Record<ConversationId, number> = {};
    for (const id of chunk) conversations[id] = timeline.lastSeq(id) ?? 0;
    const result = await request("sync", { conversations });
    for (const id of chunk) {
      const page = result.conversations[id];
      if (!page) {
        timeline.forget(id);
        continue;
      }
      for (const message of page.messages) timeline.accept(message);
      if (page.has_more) await catchUp(request, timeline, id);
    }
  }
}

async function catchUp(request: Requester, timeline: Timeline, id: ConversationId): Promise<void> {
  for (;;) {
    const after_seq = timeline.lastSeq(id) ?? 0;
    const page = await request("history.get", {
      conversation_id: id,
      after_seq,
      limit: HISTORY_PAGE,
    });
    for (const message of page.messages) timeline.accept(message);
    if (!page.has_more || page.messages.length === 0) return;
  }
}
