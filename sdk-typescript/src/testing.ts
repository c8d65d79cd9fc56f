/**
 * In-memory stand-ins for the SDK's I/O, for your own tests.
 *
 *     const sink = new InMemorySink();
 *     const router = new Router({ goal: "summarize", paths: ["a", "b"], eventSink: sink,
 *                                 snapshotSource: new StaticSnapshotSource(null) });
 *     router.decide().report(true);
 *     sink.outcomes[0].trace_id;
 */

import type { SnapshotSource } from "./cache.js";
import { pause } from "./cache.js";
import type { EmitterStats, EventKind, EventSink } from "./emitter.js";

/** Accepts every event and keeps nothing (for benchmarks of the router's own cost). */
export class NullSink implements EventSink {
  send(_kind: EventKind, _key: string, _value: string): boolean {
    return true;
  }
  async flush(): Promise<number> {
    return 0;
  }
  async close(): Promise<number> {
    return 0;
  }
  stats(): EmitterStats {
    return { emitted: 0, delivered: 0, pending: 0, dropped: 0, failed: 0 };
  }
}

/** Keeps every event, parsed, in `decisions` and `outcomes` (and the raw JSON in `raw`). */
export class InMemorySink extends NullSink {
  readonly decisions: Record<string, unknown>[] = [];
  readonly outcomes: Record<string, unknown>[] = [];
  readonly raw: { kind: EventKind; key: string; value: string }[] = [];

  override send(kind: EventKind, key: string, value: string): boolean {
    const event = JSON.parse(value) as Record<string, unknown>;
    if (event.trace_id !== key) throw new Error(`event keyed ${key} but its trace_id is ${String(event.trace_id)}`);
    this.raw.push({ kind, key, value });
    (kind === "decision" ? this.decisions : this.outcomes).push(event);
    return true;
  }

  override stats(): EmitterStats {
    const n = this.raw.length;
    return { emitted: n, delivered: n, pending: 0, dropped: 0, failed: 0 };
  }
}

/**
 * Serves one snapshot's JSON (or null: "no snapshot for this goal yet") and the goal's
 * overrides (null: none); `set()` and `setOverrides()` replace them and wake the router's
 * policy loop.
 */
export class StaticSnapshotSource implements SnapshotSource {
  private raw: string | null;
  private overrides: string | null;
  private changed = false;
  private wake: (() => void) | null = null;

  constructor(snapshot: object | string | null = null, overrides: object | string | null = null) {
    this.raw = StaticSnapshotSource.encode(snapshot);
    this.overrides = StaticSnapshotSource.encode(overrides);
  }

  setOverrides(overrides: object | string | null): void {
    this.overrides = StaticSnapshotSource.encode(overrides);
    this.changed = true;
    this.wake?.();
  }

  fetchOverrides(): string | null {
    return this.overrides;
  }

  private static encode(snapshot: object | string | null): string | null {
    if (snapshot === null) return null;
    return typeof snapshot === "string" ? snapshot : JSON.stringify(snapshot);
  }

  set(snapshot: object | string | null): void {
    this.raw = StaticSnapshotSource.encode(snapshot);
    this.changed = true;
    this.wake?.();
  }

  async fetch(): Promise<string | null> {
    return this.raw;
  }

  async waitForUpdate(timeoutMs: number, signal: AbortSignal): Promise<boolean> {
    if (!this.changed) {
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void pause(timeoutMs, signal).then(resolve);
      });
      this.wake = null;
    }
    const changed = this.changed;
    this.changed = false;
    return changed;
  }

  async close(): Promise<void> {
    this.wake?.();
  }
}

/** A snapshot source that is always down, like an unreachable Redis. */
export class UnavailableSnapshotSource implements SnapshotSource {
  async fetch(): Promise<string | null> {
    throw new Error("snapshot source unavailable");
  }
  async waitForUpdate(): Promise<boolean> {
    throw new Error("snapshot source unavailable");
  }
  async close(): Promise<void> {}
}
