/**
 * The sampling rules against vectors generated from the Python SDK (vectors/vectors.json):
 * quantile tables to 1e-9, choices exact given the same uniforms and the same count of
 * decisions (the recovery probes' clock), frequencies of seeded runs within a tolerance from
 * the math, recovery probe rates to 1e-12, the partition of keys exact, and a router's own
 * outcomes exact: the outcome at which each alarm opens or ends, what is folded into the
 * posterior until a snapshot counts it.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { LocalEvidence, type LocalArm } from "../../src/local.js";
import { partitionOf } from "../../src/murmur2.js";
import { parseOverrides } from "../../src/overrides.js";
import { CompiledPolicy, parseSnapshot, type PathStats, type PolicySnapshot } from "../../src/policy.js";
import { Rng, type RandomSource } from "../../src/random.js";
import {
  ArmSet,
  betaQuantiles,
  choose,
  makeArm,
  probeRate,
  samplingParams,
  type SamplingParams,
} from "../../src/sampling.js";
import { PACKAGE } from "../support/helpers.js";

interface ArmSpec {
  name: string;
  alpha?: number;
  beta?: number;
  n?: number;
  cold?: boolean;
  stale?: boolean;
  degrading?: boolean;
  alerted_at?: number;
  mean_cost?: number;
  mean_latency?: number;
}
interface Scenario {
  name: string;
  params: Record<string, number>;
  arms: ArmSpec[];
}
const vectors = JSON.parse(readFileSync(join(PACKAGE, "vectors", "vectors.json"), "utf8")) as {
  quantiles: { alpha: number; beta: number; knots: number[]; main: number[]; lower: number[]; upper: number[] }[];
  choices: (Scenario & { cases: { uniforms: number[]; decisions: number; index: number; reason: string; used: number }[] })[];
  frequencies: (Scenario & { decisions: number; counts: Record<string, number> })[];
  murmur2: { keys: string[]; partitions: Record<string, number[]> };
  probe_rates: { params: Record<string, number>; alerted_at: number; decisions: number[]; rates: number[] }[];
  policies: {
    name: string;
    params: { min_samples: number; staleness: number };
    paths: string[];
    now: string;
    alerted_at: Record<string, number>;
    snapshot: string;
    arms: { name: string; cold: boolean; stale: boolean; degrading: boolean; alerted_at: number }[];
    statuses: string[];
  }[];
  overrides: {
    name: string;
    now: string;
    params: Record<string, number>;
    alerted_at: Record<string, number>;
    paths: string[];
    snapshot: string;
    overrides: string;
    overrides_version: number | null;
    path_overrides: (string | null)[];
    cases: {
      among: string[] | null;
      uniforms: number[];
      decisions: number;
      index: number;
      reason: string;
      used: number;
      ignored: boolean;
    }[];
  }[];
  local: {
    streams: {
      name: string;
      min_samples: number;
      snapshot: Record<string, unknown>;
      changes: { after: number; snapshot: Record<string, unknown>; arms: LocalArmJson[] }[];
      t0: number;
      step: number;
      rewards: string | number[];
      returned: number[];
      alarmed: string[];
      now: number;
      arms: LocalArmJson[];
    }[];
    folding: {
      paths: string[];
      min_samples: number;
      t0: number;
      events: (
        | { add: [number, number, number][]; returned: boolean[] }
        | { bulk: { path: number; count: number; reward: number; start: number; step: number }; returned: number[] }
        | {
            step: string;
            now: number;
            snapshot: string | null;
            arms: LocalArmJson[];
            alarmed: string[];
            compiled: { alpha: number; beta: number; n: number; cold: boolean; degrading: boolean }[];
            statuses: string[];
          }
      )[];
    };
  };
};
interface LocalArmJson {
  successes: number;
  failures: number;
  count: number;
  alarm: [number, number] | null;
}

function params(p: Record<string, number>): SamplingParams {
  return samplingParams({
    explorationRate: p.exploration_rate,
    minSamples: p.min_samples,
    tieMargin: p.tie_margin,
    recoveryProbeRate: p.recovery_probe_rate,
    probeStart: p.probe_start,
    probeHalfLife: p.probe_half_life,
  });
}

function build(scenario: Scenario): [ArmSet, SamplingParams] {
  const sampling = params(scenario.params);
  const arms = scenario.arms.map((a) =>
    makeArm({
      name: a.name,
      alpha: a.alpha,
      beta: a.beta,
      n: a.n,
      cold: a.cold,
      stale: a.stale,
      degrading: a.degrading,
      alertedAt: a.alerted_at,
      meanCost: a.mean_cost ?? null,
      meanLatency: a.mean_latency ?? null,
    }),
  );
  return [new ArmSet(arms, sampling.tieMargin), sampling];
}

class Scripted implements RandomSource {
  used = 0;
  constructor(private readonly uniforms: number[]) {}
  random(): number {
    const u = this.uniforms[this.used];
    if (u === undefined) throw new Error("ran out of scripted uniforms");
    this.used += 1;
    return u;
  }
  randrange(n: number): number {
    return Math.floor(this.random() * n);
  }
}

test("quantile tables match the Python SDK's", () => {
  assert.ok(vectors.quantiles.length >= 5);
  for (const q of vectors.quantiles) {
    const tables = betaQuantiles(q.alpha, q.beta);
    q.knots.forEach((k, i) => {
      for (const which of ["main", "lower", "upper"] as const) {
        const got = tables[which][k]!;
        const want = q[which][i]!;
        assert.ok(Math.abs(got - want) <= 1e-9, `Beta(${q.alpha}, ${q.beta}) ${which}[${k}]: ${got} != ${want}`);
      }
    });
  }
});

test("given the same uniforms and count of decisions, every choice is the Python SDK's", () => {
  let cases = 0;
  const clocks = new Set<number>();
  for (const scenario of vectors.choices) {
    const [set, sampling] = build(scenario);
    for (const c of scenario.cases) {
      const rng = new Scripted(c.uniforms);
      const [index, reason] = choose(set, rng, sampling, c.decisions);
      const where = `${scenario.name}: ${JSON.stringify(c.uniforms)} at ${c.decisions} decisions`;
      assert.deepEqual([index, reason, rng.used], [c.index, c.reason, c.used], where);
      clocks.add(c.decisions);
      cases += 1;
    }
  }
  assert.ok(cases >= 2000);
  assert.ok(clocks.size >= 5, "the cases exercise the recovery probes' clock");
});

test("an alerted path's probe rate is the Python SDK's at every age", () => {
  assert.ok(vectors.probe_rates.length >= 4);
  for (const p of vectors.probe_rates) {
    const arm = makeArm({ name: "alerted", degrading: true, alertedAt: p.alerted_at });
    const sampling = params(p.params);
    p.decisions.forEach((decisions, i) => {
      const got = probeRate(arm, decisions, sampling);
      const want = p.rates[i]!;
      const where = `${JSON.stringify(p.params)} alerted at ${p.alerted_at}, ${decisions} decisions`;
      assert.ok(Math.abs(got - want) <= 1e-12, `${where}: ${got} != ${want}`);
    });
  }
});

test("seeded runs choose each (path, reason) as often as the Python SDK, within 4.5 standard errors", () => {
  // Two independent binomial proportions of the same p: the difference has variance
  // p(1 - p)(1/n1 + 1/n2). At 4.5 standard errors a correct implementation fails about once in
  // 150,000 comparisons; the seeds are fixed, so the outcome does not change between runs.
  // The i-th decision (from 1) is made at a router count of i decisions, as in the Python run.
  const rng = new Rng(20261205);
  for (const scenario of vectors.frequencies) {
    const [set, sampling] = build(scenario);
    const n = scenario.decisions;
    const counts = new Map<string, number>();
    for (let i = 1; i <= n; i++) {
      const [index, reason] = choose(set, rng, sampling, i);
      const key = `${index}:${reason}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    const keys = new Set([...counts.keys(), ...Object.keys(scenario.counts)]);
    for (const key of keys) {
      const ours = (counts.get(key) ?? 0) / n;
      const theirs = (scenario.counts[key] ?? 0) / scenario.decisions;
      const p = (ours * n + theirs * scenario.decisions) / (n + scenario.decisions);
      const se = Math.sqrt(p * (1 - p) * (1 / n + 1 / scenario.decisions));
      const tolerance = Math.max(4.5 * se, 1 / n);
      assert.ok(Math.abs(ours - theirs) <= tolerance, `${scenario.name} ${key}: ${ours} vs Python ${theirs} (tolerance ${tolerance})`);
    }
  }
});

test("trace ids land in the partition the Python producer picks (murmur2)", () => {
  const { keys, partitions } = vectors.murmur2;
  for (const [count, expected] of Object.entries(partitions)) {
    assert.deepEqual(keys.map((k) => partitionOf(k, Number(count))), expected, `${count} partitions`);
  }
});

test("a snapshot means the same to both SDKs: cold, stale, degrading since when, the status shown", () => {
  assert.ok(vectors.policies.length >= 2);
  for (const p of vectors.policies) {
    const compiled = CompiledPolicy.compile(parseSnapshot(p.snapshot), p.paths, {
      minSamples: p.params.min_samples,
      tieMargin: 0.05,
      pathStalenessMs: p.params.staleness * 1000,
      now: Date.parse(p.now),
      alertedAt: new Map(Object.entries(p.alerted_at)),
    });
    const arms = compiled.armSet.arms.map((a) => ({
      name: a.name,
      cold: a.cold,
      stale: a.stale,
      degrading: a.degrading,
      alerted_at: a.alertedAt,
    }));
    assert.deepEqual(arms, p.arms, p.name);
    assert.deepEqual(compiled.view("vectors", false).paths.map((v) => v.status), p.statuses, p.name);
  }
});

test("overrides: the same pin, the same disabled paths left out, the same draws", () => {
  assert.ok(vectors.overrides.length >= 3);
  let cases = 0;
  for (const o of vectors.overrides) {
    const sampling = params(o.params);
    const compiled = CompiledPolicy.compile(parseSnapshot(o.snapshot), o.paths, {
      minSamples: sampling.minSamples,
      tieMargin: sampling.tieMargin,
      pathStalenessMs: 7 * 24 * 3600 * 1000,
      overrides: parseOverrides(o.overrides),
      overridesRaw: o.overrides,
      now: Date.parse(o.now),
      alertedAt: new Map(Object.entries(o.alerted_at)),
    });
    const view = compiled.view("vectors", false);
    assert.equal(view.overridesVersion, o.overrides_version, o.name);
    assert.deepEqual(view.paths.map((p) => p.override?.kind ?? null), o.path_overrides, o.name);
    for (const c of o.cases) {
      const rng = new Scripted(c.uniforms);
      let ignored = false;
      const among = c.among === null ? null : c.among.map((p) => o.paths.indexOf(p));
      const [index, reason] = compiled.choose(among, rng, sampling, () => (ignored = true), c.decisions);
      assert.deepEqual([index, reason, rng.used, ignored], [c.index, c.reason, c.used, c.ignored], `${o.name}: ${JSON.stringify(c)}`);
      cases += 1;
    }
  }
  assert.ok(cases >= 600);
});

/** One path's stats as the vectors write them (PathStats JSON), as the SDK parses them. */
function pathStats(json: Record<string, unknown>): ReadonlyMap<string, PathStats> {
  const raw = JSON.stringify({ goal: "vectors", version: 1, generated_at: "2026-12-01T00:00:00Z", paths: { x: json } });
  return parseSnapshot(raw).paths;
}

function armsJson(arms: LocalArm[]): LocalArmJson[] {
  return arms.map((a) => ({ successes: a.successes, failures: a.failures, count: a.count, alarm: a.alarm === null ? null : [a.alarm[0], a.alarm[1]] }));
}

test("a router's own outcomes: the same seeded streams alarm and recover at the same outcomes as in the Python SDK", () => {
  const streams = vectors.local.streams;
  assert.ok(streams.length >= 5);
  let alarms = 0;
  for (const s of streams) {
    const rewards = typeof s.rewards === "string" ? [...s.rewards].map(Number) : s.rewards;
    const evidence = new LocalEvidence(["x"], s.min_samples);
    let known = pathStats(s.snapshot);
    evidence.arms(known, s.t0 * 1000);
    const changes = new Map(s.changes.map((c) => [c.after, c]));
    const returned: number[] = [];
    rewards.forEach((reward, k) => {
      const i = k + 1;
      const at = (s.t0 + i * s.step) * 1000;
      if (evidence.add(0, reward, at)) returned.push(i);
      const change = changes.get(i);
      if (change !== undefined) {
        known = pathStats(change.snapshot);
        assert.deepEqual(armsJson(evidence.arms(known, at)), change.arms, `${s.name}: after outcome ${i}`);
      }
    });
    assert.deepEqual(returned, s.returned, s.name);
    assert.deepEqual(evidence.alarmed(), s.alarmed, s.name);
    assert.deepEqual(armsJson(evidence.arms(known, s.now * 1000)), s.arms, s.name);
    alarms += returned.length;
  }
  assert.ok(alarms >= 10, "the streams open and end alarms");
});

test("a router's own outcomes are folded until a snapshot counts them, as in the Python SDK", () => {
  const f = vectors.local.folding;
  const evidence = new LocalEvidence(f.paths, f.min_samples);
  let steps = 0;
  for (const event of f.events) {
    if ("add" in event) {
      const returned = event.add.map(([index, reward, at]) => evidence.add(index, reward, (f.t0 + at) * 1000));
      assert.deepEqual(returned, event.returned, JSON.stringify(event.add));
    } else if ("bulk" in event) {
      const b = event.bulk;
      const returned: number[] = [];
      for (let k = 0; k < b.count; k++) {
        if (evidence.add(b.path, b.reward, (f.t0 + b.start + k * b.step) * 1000)) returned.push(k + 1);
      }
      assert.deepEqual(returned, event.returned, "bulk");
    } else {
      const snapshot: PolicySnapshot | null = event.snapshot === null ? null : parseSnapshot(event.snapshot);
      const now = event.now * 1000;
      const arms = evidence.arms(snapshot?.paths ?? new Map(), now);
      assert.deepEqual(armsJson(arms), event.arms, event.step);
      assert.deepEqual(evidence.alarmed(), event.alarmed, event.step);
      const compiled = CompiledPolicy.compile(snapshot, f.paths, {
        minSamples: f.min_samples,
        tieMargin: 0.05,
        pathStalenessMs: 7 * 24 * 3600 * 1000,
        now,
        local: arms,
      });
      const got = compiled.armSet.arms.map((a) => ({ alpha: a.alpha, beta: a.beta, n: a.n, cold: a.cold, degrading: a.degrading }));
      assert.deepEqual(got, event.compiled, event.step);
      assert.deepEqual(compiled.view("vectors", false).paths.map((p) => p.status), event.statuses, event.step);
      steps += 1;
    }
  }
  assert.ok(steps >= 4);
});
