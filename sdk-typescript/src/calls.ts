/**
 * What the helpers that call paths for the host (`run()`, `completion()`) need from the
 * Router, as a narrow interface, and the rule that says which results are reported.
 *
 * The rule: an exception, a provider failure or a cancellation is reported at once, as a
 * failure with its category. A returned value or a 200 answer is judged by `successFn` when
 * there is one; without one it is reported as a success only if the router was built with
 * `successOnReturn: true`, and otherwise waits for the caller's verdict (`router.report()`,
 * `decision.report()`, or an OutcomeEvent sent later by any service with the trace id).
 */

import { validateOutcome, type Decision, type FailureCategory, type Turn } from "./decision.js";
import type { OnceLog } from "./log.js";

/** Applies `successFn` (or `successOnReturn`) to what a path returned. */
export class Judge {
  constructor(
    private readonly successFn: ((result: never) => boolean | Promise<boolean>) | null,
    private readonly successOnReturn: boolean,
    private readonly warnings: OnceLog,
  ) {}

  /** true or false when this result is to be reported now; null when it waits for the caller. */
  async verdict(result: unknown): Promise<boolean | null> {
    if (this.successFn === null) return this.successOnReturn ? true : null;
    try {
      return Boolean(await (this.successFn as (r: unknown) => boolean | Promise<boolean>)(result));
    } catch (error) {
      // a judge that fails has not judged the result a success
      this.warnings.warn("judge", `successFn threw ${String(error)}; counted as a failure`);
      return false;
    }
  }
}

/**
 * The Router, as seen by the helpers that call paths. `decide(among, forcePath, madeBy)` makes
 * a decision (among path indexes, or all) and makes it this async context's current one (a
 * `retry` replaces the current decision of the call that retries, so that its caller sees it);
 * `resume(decision)` makes an open decision of this router current again (ArgumentError
 * otherwise); `current()` is the current one.
 */
export interface CallHost {
  readonly paths: readonly string[];
  decide(
    among: readonly number[] | null,
    forcePath: string | null,
    madeBy: string,
    retry?: boolean,
  ): Decision;
  resume(decision: Decision, argument: string): void;
  current(): Decision | undefined;
  readonly judge: Judge;
  readonly warnings: OnceLog;
}

/** The caller gave up: an AbortSignal fired (an AbortError). */
export function cancelled(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}

/** Record the turn and report the decision as failed; one reported already stays as it was. */
export function settleFailure(decision: Decision, turn: Turn, category: FailureCategory, by: string): void {
  if (decision.reported) return;
  decision.reporter.recordTurn(decision, turn);
  decision.reporter.emit(decision, validateOutcome(false, { failureCategory: category }), by);
}

/** Record the turn; report it when the judge had a verdict. */
export function settleResult(decision: Decision, turn: Turn, verdict: boolean | null, by: string): void {
  decision.reporter.recordTurn(decision, turn);
  if (verdict !== null) {
    const failureCategory: FailureCategory | null = verdict ? null : "invalid_output";
    decision.reporter.emit(decision, validateOutcome(verdict, { failureCategory }), by);
  }
}
