/**
 * A router's own outcomes: folded into its policy until a snapshot counts them, and watched
 * for a sudden drop where they happen. Pure logic, no I/O; the same rules and the same
 * arithmetic as the Python SDK's `producer_sdk._impl.local` (the shared vectors replay seeded
 * reward streams through both and compare the outcomes at which an alarm opens or ends).
 *
 * **Folding.** Each outcome this router reports waits here until a snapshot counts it, that is
 * until the path's `last_outcome_at` in a snapshot reaches the outcome's time; meanwhile the
 * policy the router decides with adds it to the path's posterior (and to its count, so a new
 * path leaves cold start sooner). An outcome of another process newer than ours can make ours
 * leave a little early (outcomes reach the workers through several partitions): the view then
 * undercounts for a moment, and never counts an outcome twice. At most `PENDING_MAX` outcomes
 * wait per path, none longer than `PENDING_AGE_MS` (a pipeline that is down for longer leaves
 * the router with the snapshot's view, as before).
 *
 * **Watching.** The workers see a drop only after the pipeline: hundreds of milliseconds,
 * which at 2,000 requests/s is hundreds of requests. So each path's outcomes here also feed a
 * one-sided CUSUM of the log-likelihood ratio of "the path now succeeds at half its rate"
 * against "at its snapshot rate p0" (the posterior mean, once it rests on at least
 * `MIN_EVIDENCE` effective outcomes and shows no alert). It alarms at `log(1 / ALARM_P)`: by
 * Lorden's bound a CUSUM of likelihood ratios with that threshold raises at most one false
 * alarm per 1 / ALARM_P outcomes of a path that keeps its rate (the Python module gives the
 * measurements: a 0.98 -> 0.30 drop is seen after a median of 5 outcomes).
 *
 * While the alarm holds, the router restarts the path's posterior from the outcomes of the
 * alarm's run and treats it as alerted (recovery probes only), as the workers do with an alert
 * of theirs. The alarm ends when a snapshot shows the workers' alert on the path (they take
 * over), or when the outcomes since the alarm show the path back: a CUSUM of "within 5 points
 * of p0" against "at half of p0" reaching `log(1 / RESOLVE_P)`.
 *
 * A small local sample does not outweigh the global posterior by counts: a folded outcome
 * weighs one, as it will in the snapshot. Only the drop test acts on few outcomes, with its
 * false-alarm bound.
 */

import type { PathStats } from "./policy.js";

export const PENDING_MAX = 1_000;
export const PENDING_AGE_MS = 300_000;
/** Effective outcomes (alpha + beta - 2) a snapshot's posterior needs to be a baseline. */
export const MIN_EVIDENCE = 20.0;
export const ALARM_P = 1e-4;
export const RESOLVE_P = 1e-2;
const ALARM = Math.log(1.0 / ALARM_P);
const RESOLVE = Math.log(1.0 / RESOLVE_P);
/** Below this baseline "half the rate" is too close to it to tell apart from few outcomes. */
const MIN_BASELINE = 0.2;
/** The resolve test's margin: back within half of the workers' default min_drop. */
const BACK_MARGIN = 0.05;
const RUN_MAX = 200;

function clip(p: number): number {
  return Math.min(0.99, Math.max(0.01, p));
}

/**
 * What the router's own outcomes add to one path's posterior: folded successes and failures
 * and their count, or (`alarm`) the Beta parameters' successes and failures to restart it from.
 */
export interface LocalArm {
  readonly successes: number;
  readonly failures: number;
  readonly count: number;
  readonly alarm: readonly [number, number] | null;
}

const NOTHING: LocalArm = Object.freeze({ successes: 0, failures: 0, count: 0, alarm: null });

/** The outcomes waiting for a snapshot, oldest first: a ring of at most PENDING_MAX. */
class Pending {
  private readonly times = new Float64Array(PENDING_MAX);
  private readonly rewards = new Float64Array(PENDING_MAX);
  private head = 0;
  size = 0;

  push(at: number, reward: number): void {
    if (this.size === PENDING_MAX) {
      this.shift(); // the oldest leaves
    }
    const i = (this.head + this.size) % PENDING_MAX;
    this.times[i] = at;
    this.rewards[i] = reward;
    this.size += 1;
  }

  /** The oldest outcome's time (the ring must not be empty). */
  firstTime(): number {
    return this.times[this.head]!;
  }

  shift(): void {
    this.head = (this.head + 1) % PENDING_MAX;
    this.size -= 1;
  }

  /** The rewards' sum, oldest first (the order of the Python SDK's sum: the same bits). */
  sum(): number {
    let total = 0;
    for (let k = 0; k < this.size; k++) total += this.rewards[(this.head + k) % PENDING_MAX]!;
    return total;
  }
}

/** One path's folded outcomes and its two tests. */
class PathWatch {
  readonly pending = new Pending();
  /** log-likelihood ratio per success and per failure of "half the rate" against p0 */
  private onSuccess = 0;
  private onFailure = 0;
  private baseline: number | null = null;
  private cusum = 0;
  /** rewards since the CUSUM left zero */
  private readonly run: number[] = [];
  /** while alarmed: the restarted posterior's successes and failures */
  alarm: [number, number] | null = null;
  private backSuccess = 0;
  private backFailure = 0;
  private back = 0;

  setBaseline(p0: number | null): void {
    if (p0 === this.baseline) return;
    this.baseline = p0;
    if (p0 === null) {
      this.cusum = 0;
      this.run.length = 0;
      return;
    }
    const p1 = p0 / 2.0;
    this.onSuccess = Math.log(p1 / p0);
    this.onFailure = Math.log((1.0 - p1) / (1.0 - p0));
  }

  endAlarm(): void {
    this.alarm = null;
    this.back = 0;
    this.cusum = 0;
    this.run.length = 0;
  }

  /**
   * Feed the drop test (or, while alarmed, the recovery test); true when the alarm opened or
   * ended. (Outcomes while it holds go into the restarted posterior, which the next compile
   * of the policy takes.)
   */
  watch(reward: number): boolean {
    const alarm = this.alarm;
    if (alarm !== null) {
      this.alarm = [alarm[0] + reward, alarm[1] + 1.0 - reward];
      const step = reward * this.backSuccess + (1.0 - reward) * this.backFailure;
      this.back = Math.max(0.0, this.back + step);
      if (this.back < RESOLVE) return false;
      this.endAlarm();
      return true;
    }
    const baseline = this.baseline;
    if (baseline === null) return false;
    const step = reward * this.onSuccess + (1.0 - reward) * this.onFailure;
    this.cusum = Math.max(0.0, this.cusum + step);
    if (this.cusum === 0.0) {
      this.run.length = 0;
      return false;
    }
    this.run.push(reward);
    if (this.run.length > RUN_MAX) this.run.shift();
    if (this.cusum < ALARM) return false;
    let successes = 0;
    for (const r of this.run) successes += r;
    this.alarm = [successes, this.run.length - successes];
    // The recovery test: "back within the margin of p0" against "at half of p0", the drop
    // the alarm tested for (the run's own rate rests on a handful of outcomes).
    const bad = baseline / 2.0;
    const good = clip(baseline - BACK_MARGIN);
    this.backSuccess = Math.log(good / bad);
    this.backFailure = Math.log((1.0 - good) / (1.0 - bad));
    this.back = 0;
    this.cusum = 0;
    this.run.length = 0;
    return true;
  }
}

/**
 * One router's own outcomes per path (see the module comment). `add` runs when an outcome
 * is reported, `arms` when the policy is compiled.
 */
export class LocalEvidence {
  private readonly names: readonly string[];
  private readonly watches: PathWatch[];

  constructor(
    paths: readonly string[],
    private readonly minSamples: number,
  ) {
    this.names = [...paths];
    this.watches = this.names.map(() => new PathWatch());
  }

  /**
   * An outcome of path `index` reported at `at` (milliseconds since the Unix epoch; now by
   * default). True when the path's alarm opened or ended: compile the policy again now.
   */
  add(index: number, reward: number, at: number = Date.now()): boolean {
    const path = this.watches[index]!;
    path.pending.push(at, reward);
    return path.watch(reward);
  }

  /** The paths whose alarm holds. */
  alarmed(): string[] {
    return this.names.filter((_, i) => this.watches[i]!.alarm !== null);
  }

  /**
   * What the router's outcomes add to each path's posterior in a snapshot whose paths are
   * `known`: outcomes the snapshot counts leave, baselines follow the snapshot, and an alert
   * of the workers' ends the path's alarm (they take over). `now` in milliseconds.
   */
  arms(known: ReadonlyMap<string, PathStats>, now: number = Date.now()): LocalArm[] {
    const oldest = now - PENDING_AGE_MS;
    return this.names.map((name, i) => {
      const path = this.watches[i]!;
      const stats = known.get(name);
      const pending = path.pending;
      const counted = stats?.lastOutcomeAt ?? null;
      // Counted by the snapshot (a microsecond of slack for rounding), or too old.
      const cut = counted === null ? oldest : Math.max(oldest, counted + 0.001);
      while (pending.size > 0 && pending.firstTime() <= cut) pending.shift();
      if (stats?.status === "degrading") path.endAlarm();
      path.setBaseline(this.baseline(stats));
      const alarm = path.alarm;
      if (pending.size === 0 && alarm === null) return NOTHING;
      const successes = pending.sum();
      return {
        successes,
        failures: pending.size - successes,
        count: pending.size,
        alarm: alarm === null ? null : [alarm[0], alarm[1]],
      };
    });
  }

  private baseline(stats: PathStats | undefined): number | null {
    if (stats === undefined || stats.status === "degrading" || stats.n < this.minSamples) return null;
    if (stats.alpha + stats.beta - 2.0 < MIN_EVIDENCE) return null;
    const p0 = stats.alpha / (stats.alpha + stats.beta);
    return p0 >= MIN_BASELINE ? Math.min(p0, 0.999) : null;
  }
}

/** What an outcome teaches, as the workers' join counts it: the score when given. */
export function rewardOf(success: boolean, score: number | null): number {
  return score !== null ? score : success ? 1.0 : 0.0;
}
