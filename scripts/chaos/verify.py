"""The chaos run's end checks, held against MongoDB itself (pymongo) and the dead-letter topic
(confluent-kafka), from the load generator's ledger (parley-loadtest --ledger): what every
client believes was acked, gave up on, and holds after a last `sync`."""

from collections import defaultdict


def store_messages(database, conversation_ids):
    """conversation_id -> seq -> [documents] (a list, so two documents on one seq show)."""
    found = defaultdict(lambda: defaultdict(list))
    cursor = database["messages"].find(
        {"conversation_id": {"$in": sorted(conversation_ids)}},
        {"conversation_id": 1, "seq": 1, "message_id": 1, "client_msg_id": 1,
         "sender_id": 1, "deleted": 1, "text": 1})
    for document in cursor:
        found[document["conversation_id"]][int(document["seq"])].append(document)
    return found


def lost_acks(ledger, store, problems):
    """Acked messages not in the store under their acked seq and message id."""
    lost = 0
    for client in ledger["clients"]:
        for ack in client["acked"]:
            documents = store[ack["conversation_id"]].get(ack["seq"], [])
            if not any(stored_as_acked(document, ack) for document in documents):
                lost += 1
                problems.append(f"acked message lost: {client['user_id']} {ack} -> {documents}")
    return lost


def stored_as_acked(document, ack):
    return (document["message_id"] == ack["message_id"]
            and document["client_msg_id"] == ack["client_msg_id"]
            and not document.get("deleted"))


def duplicates(store, problems):
    """Documents beyond the first of one seq, or of one (sender, client_msg_id) left live."""
    extra = 0
    for conversation_id, by_seq in store.items():
        keys = defaultdict(list)
        for seq, documents in by_seq.items():
            if len(documents) > 1:
                extra += len(documents) - 1
                problems.append(f"{len(documents)} documents at {conversation_id} seq {seq}")
            for document in documents:
                if not document.get("deleted"):
                    keys[(document["sender_id"], document["client_msg_id"])].append(seq)
        for key, seqs in keys.items():
            if len(seqs) > 1:
                extra += len(seqs) - 1
                problems.append(f"{key} stored {len(seqs)} times in {conversation_id}: seqs {seqs}")
    return extra


def seq_holes(ledger, store, problems):
    """Seqs missing from 1 to the highest any client or the store knows; tombstones (deleted
    documents) fill their seq, so every missing seq is unexplained."""
    highest = defaultdict(int)
    for client in ledger["clients"]:
        for ack in client["acked"]:
            highest[ack["conversation_id"]] = max(highest[ack["conversation_id"]], ack["seq"])
        for conversation_id, view in client["views"].items():
            seqs = [int(seq) for seq in view["messages"]]
            highest[conversation_id] = max([highest[conversation_id], *seqs])
    for conversation_id, by_seq in store.items():
        highest[conversation_id] = max([highest[conversation_id], *by_seq])
    holes = 0
    for conversation_id, top in highest.items():
        missing = [seq for seq in range(1, top + 1) if seq not in store[conversation_id]]
        holes += len(missing)
        if missing:
            problems.append(f"seq holes in {conversation_id}: {missing[:20]}")
    return holes


def divergent_clients(ledger, store, problems):
    """Clients whose view (seq -> message_id above their watch point) differs from the store."""
    divergent = 0
    for client in ledger["clients"]:
        differs = []
        for conversation_id, view in client["views"].items():
            held = {int(seq): message_id for seq, message_id in view["messages"].items()}
            stored = {seq: documents[0]["message_id"]
                      for seq, documents in store[conversation_id].items()
                      if seq > view["from_seq"]}
            if held != stored:
                only_client = sorted(set(held.items()) - set(stored.items()))[:5]
                only_store = sorted(set(stored.items()) - set(held.items()))[:5]
                differs.append(f"{conversation_id}: only the client {only_client}, "
                               f"only the store {only_store}")
        if differs:
            divergent += 1
            problems.append(f"{client['user_id']} differs from the store: {'; '.join(differs)}")
    return divergent


def gave_up_stored(ledger, store):
    """Messages given up on that the store holds anyway (allowed once: the ack was lost)."""
    stored = 0
    for client in ledger["clients"]:
        for abandoned in client["gave_up"]:
            documents = [document for documents in store[abandoned["conversation_id"]].values()
                         for document in documents
                         if document["client_msg_id"] == abandoned["client_msg_id"]
                         and not document.get("deleted")]
            stored += bool(documents)
    return stored


def dead_letters(brokers, topic, expected, timeout_secs=30):
    """Distinct records set aside in the dead-letter topic (one record may be set aside twice
    when an ingest dies between the produce and the commit), by source topic/partition/offset.
    Reads until `expected` are seen and nothing more comes for 3 s, or for `timeout_secs`."""
    import time
    import uuid

    from confluent_kafka import Consumer  # the chaos venv's

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": f"chaos-{uuid.uuid4()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "log_level": 3})
    consumer.subscribe([topic])
    sources = set()
    deadline = time.monotonic() + timeout_secs
    quiet_polls = 0
    while time.monotonic() < deadline and not (len(sources) >= expected and quiet_polls >= 3):
        record = consumer.poll(1.0)
        if record is None or record.error():
            quiet_polls += 1
            continue
        quiet_polls = 0
        headers = dict(record.headers() or [])
        sources.add(tuple(headers.get(name, b"").decode() for name in
                          ("source_topic", "source_partition", "source_offset")))
    consumer.close()
    return len(sources)


def check(ledger, database, problems):
    """The store-side checks; a dict of name -> count."""
    conversation_ids = set()
    for client in ledger["clients"]:
        conversation_ids.update(client["views"])
        conversation_ids.update(ack["conversation_id"] for ack in client["acked"])
    store = store_messages(database, conversation_ids)
    return {
        "acked_messages": sum(len(client["acked"]) for client in ledger["clients"]),
        "gave_up": sum(len(client["gave_up"]) for client in ledger["clients"]),
        "gave_up_but_stored": gave_up_stored(ledger, store),
        "acked_lost": lost_acks(ledger, store, problems),
        "duplicates_in_store": duplicates(store, problems),
        "clients_diverging": divergent_clients(ledger, store, problems),
        "unexplained_seq_holes": seq_holes(ledger, store, problems),
        "tombstones": sum(1 for by_seq in store.values() for documents in by_seq.values()
                          for document in documents if document.get("deleted")),
    }
