/** Reconnect delays: exponential from `initialMs` to `maxMs`, with "equal jitter" (half fixed,
 * half random) so that many clients dropped at once do not come back at once. */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 250, maxMs: 10_000 };

export class Backoff {
  private attempt = 0;

  constructor(
    private readonly options: BackoffOptions = DEFAULT_BACKOFF,
    private readonly random: () => number = Math.random,
  ) {}

  /** The delay before the next attempt; each call doubles the ceiling. */
  next(): number {
    const ceiling = Math.min(this.options.maxMs, this.options.initialMs * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + (this.random() * ceiling) / 2;
  }

  reset(): void {
    this.attempt = 0;
  }
}

/** Adds up to `fraction` of random extra delay, as the protocol advises after `goaway`. */
export function withJitter(ms: number, fraction = 0.2, random: () => number = Math.random): number {
  return ms + ms * fraction * random();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
