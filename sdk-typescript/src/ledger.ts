/**
 * One router's record of what was reported: the first report of a decision is emitted, later
 * ones are counted and warned about, and a decision's turns add up until it is reported.
 */

import { withTurns, type Decision, type Outcome, type Reporter, type Turn } from "./decision.js";
import type { EventSink } from "./emitter.js";
import { EventEncoder, nowMicros } from "./encode.js";
import type { OnceLog } from "./log.js";

/** What to do instead, by who reported first (the warning names the case). */
const HINTS: Record<string, string> = {
  "report()": "report each decision once",
  "completion()":
    "it reports failures and cancellations itself; pass successFn to judge answers there, or report once",
  "run()":
    "it reports exceptions and cancellations itself; pass successFn to judge results there, or report once",
};

/** Told of each outcome emitted: its path, what was reported, and when (milliseconds since
 * the Unix epoch, the event's own `occurred_at`). */
export type Learned = (path: string, outcome: Outcome, at: number) => void;

export class Ledger implements Reporter {
  reports = 0;
  duplicates = 0;

  constructor(
    private readonly sink: () => EventSink,
    private readonly warnings: OnceLog,
    /** the router's own view of its outcomes (null: it has none) */
    private readonly learned: Learned | null = null,
  ) {}

  recordTurn(decision: Decision, turn: Turn): void {
    if (decision.reportedByValue === null) decision.turnList.push(turn);
  }

  emit(decision: Decision, outcome: Outcome, by: string): boolean {
    const first = decision.reportedByValue;
    if (first !== null) {
      this.duplicates += 1;
      this.warnings.warn(
        `duplicate:${first}`,
        `decision ${decision.traceId} was already reported by ${first}; the report by ${by} ` +
          `is ignored (${HINTS[first] ?? "report each decision once"})`,
      );
      return false;
    }
    decision.reportedByValue = by;
    this.reports += 1;
    const occurredUs = nowMicros();
    try {
      const payload = EventEncoder.outcome(decision.traceId, withTurns(outcome, decision.turnList), occurredUs);
      this.sink().send("outcome", decision.traceId, payload);
    } catch (error) {
      // never into the host: an emitter bug must not fail requests
      this.warnings.warn("send", `could not emit an outcome event: ${String(error)}`);
    }
    if (this.learned !== null) {
      try {
        // The event's own time, to the millisecond below it: a snapshot whose last_outcome_at
        // reaches the event has counted it.
        this.learned(decision.path, outcome, Math.floor(occurredUs / 1000));
      } catch (error) {
        // never into the host
        this.warnings.warn("local", `could not learn from an outcome: ${String(error)}`);
      }
    }
    return true;
  }
}
