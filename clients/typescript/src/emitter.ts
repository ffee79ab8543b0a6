/** A small typed event emitter: `Events` maps each event name to its payload type. */
export class Emitter<Events extends object> {
  private readonly handlers = new Map<keyof Events, Set<(payload: never) => void>>();

  /** Calls `handler` for every `name` event; returns a function that removes it. */
  on<Name extends keyof Events>(name: Name, handler: (payload: Events[Name]) => void): () => void {
    let set = this.handlers.get(name);
    if (!set) {
      set = new Set();
      this.handlers.set(name, set);
    }
    set.add(handler as (payload: never) => void);
    return () => set.delete(handler as (payload: never) => void);
  }

  /** Calls every handler of `name`. A handler that throws does not stop the others nor the
   * SDK's own work: its error is rethrown on its own, as an uncaught error. */
  protected emit<Name extends keyof Events>(name: Name, payload: Events[Name]): void {
    for (const handler of this.handlers.get(name) ?? []) {
      try {
        (handler as (payload: Events[Name]) => void)(payload);
      } catch (error) {
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }
}
