/** Helpers of the TypeScript SDK's tests. */

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

/** The package folder (tests run compiled, from build/test/...). */
export const PACKAGE = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

export interface PathSpecForSnapshot {
  alpha?: number;
  beta?: number;
  n?: number;
  status?: "cold" | "healthy" | "degrading" | "stale";
  mean_cost_usd?: number | null;
  mean_latency_ms?: number | null;
  last_outcome_at?: string | null;
}

/** A PolicySnapshot's JSON as the workers write it. */
export function snapshot(goal: string, version: number, paths: Record<string, PathSpecForSnapshot>): string {
  const body: Record<string, unknown> = {};
  for (const [name, p] of Object.entries(paths)) {
    body[name] = {
      schema_version: 1,
      alpha: p.alpha ?? 1,
      beta: p.beta ?? 1,
      n: p.n ?? 0,
      recent_n: 0,
      recent_successes: 0,
      baseline_rate: null,
      mean_cost_usd: p.mean_cost_usd ?? null,
      mean_latency_ms: p.mean_latency_ms ?? null,
      last_outcome_at: p.last_outcome_at ?? new Date().toISOString(),
      status: p.status ?? "healthy",
    };
  }
  return JSON.stringify({ schema_version: 1, goal, version, generated_at: new Date().toISOString(), paths: body });
}

/** Poll `check` until it holds or `seconds` pass; returns whether it held. */
export async function waitUntil(check: () => boolean | Promise<boolean>, seconds = 10): Promise<boolean> {
  const deadline = Date.now() + seconds * 1000;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}

/**
 * Validators of the JSON Schemas that `outroute schemas export` writes (OUTROUTE_SCHEMAS_DIR,
 * default build/schemas; `npm test` exports them first).
 */
export function schemaValidators() {
  const dir = process.env.OUTROUTE_SCHEMAS_DIR ?? join(PACKAGE, "build", "schemas");
  const ajv = new Ajv2020.default({ strict: false, allErrors: true });
  addFormats.default(ajv);
  const load = (name: string) => {
    let text: string;
    try {
      text = readFileSync(join(dir, `${name}.schema.json`), "utf8");
    } catch {
      throw new Error(`no ${name} schema in ${dir}: run \`outroute schemas export ${dir}\` first`);
    }
    return ajv.compile(JSON.parse(text));
  };
  const decision = load("DecisionEvent");
  const outcome = load("OutcomeEvent");
  const policy = load("PolicySnapshot");
  const check = (validate: ReturnType<typeof load>, value: unknown) => {
    if (!validate(value)) throw new Error(`${JSON.stringify(value)} is invalid: ${ajv.errorsText(validate.errors)}`);
  };
  return {
    decision: (v: unknown) => check(decision, v),
    outcome: (v: unknown) => check(outcome, v),
    policy: (v: unknown) => check(policy, v),
  };
}
