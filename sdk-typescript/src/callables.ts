/** `run()`: call the chosen function path, retrying failures on paths not tried yet. */

import { cancelled, settleFailure, settleResult, type CallHost } from "./calls.js";
import type { Decision, FailureCategory } from "./decision.js";

const BY = "run()";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type PathFn = (...args: any[]) => unknown;

function category(error: unknown): FailureCategory {
  if (cancelled(error)) return "cancelled";
  if (error instanceof Error && error.name === "TimeoutError") return "timeout";
  return "tool_error";
}

/** The functions of a router whose paths are functions. */
export class CallablePaths {
  constructor(
    private readonly host: CallHost,
    private readonly fns: readonly PathFn[],
    private readonly maxAttempts: number,
  ) {}

  /**
   * At most `maxAttempts` decisions, each among the paths not tried yet. A thrown error is a
   * failure (retried); a result rejected by successFn is a failure (retried); a cancellation
   * (AbortError) ends the run. If every attempt failed, the last error is thrown, or the last
   * result returned when the last attempt did not throw.
   */
  async run(args: unknown[]): Promise<unknown> {
    const remaining = this.fns.map((_, i) => i);
    let left = Math.min(this.maxAttempts, this.fns.length);
    let result: unknown = undefined;
    let error: unknown = undefined;
    let threw = false;
    for (let attempt = 0; left > 0; attempt++) {
      left -= 1;
      const decision: Decision = this.host.decide(remaining, null, BY, attempt > 0);
      const index = this.host.paths.indexOf(decision.path);
      const started = performance.now();
      const turn = () => ({ latencyMs: performance.now() - started });
      let value: unknown;
      try {
        value = await this.fns[index]!(...args);
      } catch (thrown) {
        settleFailure(decision, turn(), category(thrown), BY);
        remaining.splice(remaining.indexOf(index), 1);
        result = undefined;
        error = thrown;
        threw = true;
        if (cancelled(thrown)) break;
        continue;
      }
      const elapsed = turn();
      const verdict = await this.host.judge.verdict(value);
      settleResult(decision, elapsed, verdict, BY);
      if (verdict === false) {
        remaining.splice(remaining.indexOf(index), 1);
        result = value;
        threw = false;
        continue;
      }
      return value;
    }
    if (threw) throw error;
    return result;
  }
}
