/**
 * Path selection: pure functions, no I/O, an explicit random source.
 *
 * The rules, in order (the same as the Python SDK's `producer_sdk.sampling`):
 *
 * 1. `forcePath` given: that path (`forced`) -- handled by the Router.
 * 2. No policy could ever be loaded: the first path (`fallback`) -- handled by the Router.
 * 3. Every candidate has fewer than `minSamples` outcomes: uniform (`cold_start`).
 * 4. With probability `explorationRate`, a decision may explore (`explore`): a path other
 *    than the Thompson winner worth learning about. Cold or stale paths come first; else the
 *    path whose draw in the same Thompson round was the largest after the winner's (the first
 *    on equal draws), provided that draw reached the tie set (the best posterior mean less
 *    `tieMargin`): a path that could be chosen. One whose draw falls short is known to be
 *    worse: that decision takes the winner (`exploit`). Paths with an open degradation alert
 *    are left out: each costs the
 *    failures of a known-bad path. Instead a decision probes each of them with a probability
 *    (`probeRate`) that starts at `probeStart` when this router first sees the alert and
 *    halves every `probeHalfLife` of its decisions down to `recoveryProbeRate` (together at
 *    most what exploration leaves), like a breaker's half-open state: many probes while the
 *    incident may be short, few once it lasts; the workers resolve the alert on the probes'
 *    evidence (`explore`). The probe is decided by the uniform that decided exploration.
 * 5. Otherwise theta ~ Beta(alpha, beta) per path and the largest draw wins (`exploit`).
 *    Trust invariant: success rate dominates. Cost, then latency, break ties only among paths
 *    whose posterior mean is within `tieMargin` of the best posterior mean.
 *
 * A Beta draw per path per decision would cost too much. Each Arm carries its posterior's
 * quantile function at QUANTILE_KNOTS + 1 evenly spaced probabilities (and finer tables for
 * the lowest and highest 1/K), computed once per snapshot by integrating the density
 * numerically; a draw pushes one uniform variate through it (inverse-transform sampling).
 * The tables and every choice given the same uniforms match the Python SDK's exactly; the
 * shared test vectors (vectors/vectors.json) check it.
 */

import { ArgumentError } from "./errors.js";
import { Rng, type RandomSource } from "./random.js";

export type Reason = "exploit" | "explore" | "cold_start" | "forced" | "fallback" | "override";
export const REASONS: readonly Reason[] = ["exploit", "explore", "cold_start", "forced", "fallback", "override"];

export const QUANTILE_KNOTS = 512;
const K = QUANTILE_KNOTS;
const GRID = 4096;
const WINDOW_SD = 12.0;

/**
 * The knobs of path selection (the rules above), and their defaults: 10 % exploration, 20
 * outcomes before a path is no longer cold, a tie margin of 5 points of success rate;
 * recovery probes of an alerted path from 3 % of decisions, halving every 200 decisions, down
 * to 1.5 %.
 */
export interface SamplingParams {
  readonly explorationRate: number;
  readonly minSamples: number;
  readonly tieMargin: number;
  /** the floor of an alerted path's probe rate */
  readonly recoveryProbeRate: number;
  /** an alerted path's probe rate when this router first sees the alert */
  readonly probeStart: number;
  /** decisions (an integer >= 1) over which the probe rate halves towards the floor */
  readonly probeHalfLife: number;
  /**
   * The router folds its own process's outcomes into its policy until the snapshot counts
   * them, and watches them for a sudden drop (local.ts).
   */
  readonly localOutcomes: boolean;
}

export const DEFAULT_SAMPLING: SamplingParams = Object.freeze({
  explorationRate: 0.1,
  minSamples: 20,
  tieMargin: 0.05,
  recoveryProbeRate: 0.015,
  probeStart: 0.03,
  probeHalfLife: 200,
  localOutcomes: true,
});

function isNumber(value: unknown): value is number {
  return typeof value === "number" && Number.isFinite(value);
}

/** Checked parameters; an ArgumentError names the field and the rule. */
export function samplingParams(given: Partial<SamplingParams> = {}): SamplingParams {
  const p = { ...DEFAULT_SAMPLING, ...stripUndefined(given) };
  for (const name of ["explorationRate", "recoveryProbeRate", "tieMargin", "probeStart"] as const) {
    const v = p[name];
    if (!isNumber(v) || v < 0 || v > 1) {
      throw new ArgumentError(`${name} must be a number in [0, 1], got ${String(v)}`);
    }
  }
  if (!Number.isSafeInteger(p.minSamples) || p.minSamples < 0) {
    throw new ArgumentError(`minSamples must be a non-negative integer, got ${String(p.minSamples)}`);
  }
  if (!Number.isSafeInteger(p.probeHalfLife) || p.probeHalfLife < 1) {
    throw new ArgumentError(`probeHalfLife must be an integer >= 1 (decisions), got ${String(p.probeHalfLife)}`);
  }
  if (typeof p.localOutcomes !== "boolean") {
    throw new ArgumentError(`localOutcomes must be a boolean, got ${String(p.localOutcomes)}`);
  }
  return Object.freeze(p);
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Three tables of the quantile function: at k/K, and at j/K^2 in the lowest and highest 1/K. */
export interface Tables {
  readonly main: Float64Array;
  readonly lower: Float64Array;
  readonly upper: Float64Array;
}

const MAIN_P: number[] = [];
const LOWER_P: number[] = [];
const UPPER_P: number[] = [];
for (let k = 0; k <= K; k++) {
  MAIN_P.push(k / K);
  LOWER_P.push(k / (K * K));
  UPPER_P.push(1.0 - 1.0 / K + k / (K * K));
}
const ALL_P: number[] = [...new Set([...MAIN_P, ...LOWER_P, ...UPPER_P])].sort((a, b) => a - b);

const UNIFORM_TABLES: Tables = Object.freeze({
  main: Float64Array.from(MAIN_P),
  lower: Float64Array.from(LOWER_P),
  upper: Float64Array.from(UPPER_P),
});

// Lanczos approximation (g = 7, 9 terms) of ln Gamma(x), x > 0. It only scales the density,
// and the scale cancels out (quantiles are taken of the normalised integral).
const LANCZOS = [
  0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313,
  -176.61502916214059, 12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6,
  1.5056327351493116e-7,
];

export function lgamma(x: number): number {
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - lgamma(1 - x);
  const z = x - 1;
  let a = LANCZOS[0]!;
  const t = z + 7.5;
  for (let i = 1; i < 9; i++) a += LANCZOS[i]! / (z + i);
  return 0.5 * Math.log(2 * Math.PI) + (z + 0.5) * Math.log(t) - t + Math.log(a);
}

/** Quantiles of Beta(alpha, beta) (alpha, beta >= 1) at increasing `probabilities`. */
function inverseCdf(alpha: number, beta: number, probabilities: readonly number[]): number[] {
  const total = alpha + beta;
  const mean = alpha / total;
  const sd = Math.sqrt((alpha * beta) / (total * total * (total + 1.0)));
  const lo = Math.max(0.0, mean - WINDOW_SD * sd);
  const hi = Math.min(1.0, mean + WINDOW_SD * sd);
  const width = (hi - lo) / GRID;
  const logNorm = lgamma(total) - lgamma(alpha) - lgamma(beta);
  const a1 = alpha - 1.0;
  const b1 = beta - 1.0;
  // Midpoint rule: the density is evaluated strictly inside (0, 1), never at a boundary.
  const cdf = new Float64Array(GRID + 1);
  let acc = 0.0;
  for (let i = 0; i < GRID; i++) {
    const x = lo + (i + 0.5) * width;
    acc += Math.exp(logNorm + a1 * Math.log(x) + b1 * Math.log(1.0 - x));
    cdf[i + 1] = acc;
  }
  const mass = acc;
  const out: number[] = [];
  let cell = 0;
  for (const p of probabilities) {
    if (p <= 0.0) {
      out.push(lo);
      continue;
    }
    if (p >= 1.0) {
      out.push(hi);
      continue;
    }
    const target = mass * p;
    while (cell < GRID - 1 && cdf[cell + 1]! < target) cell++;
    const step = cdf[cell + 1]! - cdf[cell]!;
    const frac = step > 0 ? (target - cdf[cell]!) / step : 0.0;
    out.push(lo + (cell + frac) * width);
  }
  return out;
}

/** The quantile function of Beta(alpha, beta) as three tables (see Tables). */
export function betaQuantiles(alpha: number, beta: number): Tables {
  if (!(alpha > 0 && beta > 0 && Number.isFinite(alpha) && Number.isFinite(beta))) {
    throw new ArgumentError(`Beta parameters must be positive and finite, got (${alpha}, ${beta})`);
  }
  if (alpha === 1.0 && beta === 1.0) return UNIFORM_TABLES;
  if (alpha < 1.0 || beta < 1.0) return tablesBySampling(alpha, beta);
  const values = inverseCdf(alpha, beta, ALL_P);
  const at = new Map<number, number>();
  ALL_P.forEach((p, i) => at.set(p, values[i]!));
  return Object.freeze({
    main: Float64Array.from(MAIN_P, (p) => at.get(p)!),
    lower: Float64Array.from(LOWER_P, (p) => at.get(p)!),
    upper: Float64Array.from(UPPER_P, (p) => at.get(p)!),
  });
}

/** A textbook Beta draw: X / (X + Y) with X, Y Gamma variates (Marsaglia and Tsang). */
export function betaVariate(rng: RandomSource, alpha: number, beta: number): number {
  const x = gammaVariate(rng, alpha);
  const y = gammaVariate(rng, beta);
  return x / (x + y);
}

function gammaVariate(rng: RandomSource, shape: number): number {
  if (shape < 1) {
    return gammaVariate(rng, shape + 1) * Math.pow(1 - rng.random(), 1 / shape);
  }
  const d = shape - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    let x: number;
    let v: number;
    do {
      // Box-Muller normal
      const u1 = 1 - rng.random();
      const u2 = rng.random();
      x = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      v = 1 + c * x;
    } while (v <= 0);
    v = v * v * v;
    const u = 1 - rng.random();
    if (Math.log(u) < 0.5 * x * x + d - d * v + d * Math.log(v)) return d * v;
  }
}

function tablesBySampling(alpha: number, beta: number): Tables {
  // A density with a pole at 0 or 1 (a parameter below 1) defeats the midpoint rule. Such
  // posteriors never come from the workers (alpha, beta >= 1); empirical quantiles of a large
  // deterministic sample keep a hand-written snapshot usable. (Not bit-equal to Python's.)
  const rng = new Rng(Math.floor(alpha * 1e6) * 1000003 + Math.floor(beta * 1e6));
  const n = 64 * K;
  const sample = new Float64Array(n);
  for (let i = 0; i < n; i++) sample[i] = betaVariate(rng, alpha, beta);
  sample.sort();
  const at = (p: number) => sample[Math.min(n - 1, Math.floor(p * n))]!;
  return Object.freeze({
    main: Float64Array.from(MAIN_P, at),
    lower: Float64Array.from(LOWER_P, at),
    upper: Float64Array.from(UPPER_P, at),
  });
}

/** One candidate path as sampling sees it. Immutable; built once per snapshot. */
export interface Arm {
  readonly name: string;
  readonly alpha: number;
  readonly beta: number;
  readonly n: number;
  readonly cold: boolean;
  readonly stale: boolean;
  /** an alert is open on it: only recovery probes explore it */
  readonly degrading: boolean;
  /** the router's count of decisions when it first saw that alert (the probes' clock) */
  readonly alertedAt: number;
  readonly meanCost: number | null;
  readonly meanLatency: number | null;
  readonly tables: Tables;
}

export function armMean(arm: Arm): number {
  return arm.alpha / (arm.alpha + arm.beta);
}

/** A path nothing is known about: Beta(1, 1), no outcomes. */
export function coldArm(name: string): Arm {
  return makeArm({ name });
}

export function makeArm(fields: Partial<Arm> & { name: string }): Arm {
  const alpha = fields.alpha ?? 1.0;
  const beta = fields.beta ?? 1.0;
  return Object.freeze({
    name: fields.name,
    alpha,
    beta,
    n: fields.n ?? 0,
    cold: fields.cold ?? true,
    stale: fields.stale ?? false,
    degrading: fields.degrading ?? false,
    alertedAt: fields.alertedAt ?? 0,
    meanCost: fields.meanCost ?? null,
    meanLatency: fields.meanLatency ?? null,
    tables: fields.tables ?? betaQuantiles(alpha, beta),
  });
}

/** The posterior quantile at probability `u` in [0, 1): one Thompson draw. */
export function draw(tables: Tables, u: number): number {
  let pos = u * K;
  let i = Math.floor(pos);
  let q: Float64Array;
  if (0 < i && i < K - 1) {
    q = tables.main;
  } else {
    // the lowest or highest 1/K of probability: use the finer tail table
    q = i === 0 ? tables.lower : tables.upper;
    pos = (pos - i) * K;
    i = Math.floor(pos);
  }
  const lo = q[i]!;
  return lo + (pos - i) * (q[i + 1]! - lo);
}

/**
 * Candidates compiled for fast repeated choice: everything that does not depend on the random
 * draws (tie set, cost/latency ranking, cold flags) is computed once here.
 */
export class ArmSet {
  readonly arms: readonly Arm[];
  readonly count: number;
  readonly allCold: boolean;
  readonly degrading: readonly number[];
  readonly inTie: readonly boolean[];
  /** The lowest posterior mean of the tie set: the bar an exploration draw must reach. */
  readonly tieFloor: number;
  readonly tieRank: readonly number[] | null;
  readonly mains: Float64Array[];
  readonly lowers: Float64Array[];
  readonly uppers: Float64Array[];
  /**
   * every arm's draw of the last Thompson round, which exploration reads (deciding is
   * synchronous: never shared mid-use)
   */
  readonly draws: Float64Array;

  constructor(arms: readonly Arm[], tieMargin: number) {
    if (arms.length === 0) throw new ArgumentError("at least one arm is needed");
    this.arms = Object.freeze([...arms]);
    this.count = arms.length;
    this.mains = arms.map((a) => a.tables.main);
    this.lowers = arms.map((a) => a.tables.lower);
    this.uppers = arms.map((a) => a.tables.upper);
    this.draws = new Float64Array(arms.length);
    this.allCold = arms.every((a) => a.cold);
    this.degrading = arms.flatMap((a, i) => (a.degrading ? [i] : []));
    const floor = Math.max(...arms.map(armMean)) - tieMargin;
    this.tieFloor = floor;
    this.inTie = arms.map((a) => armMean(a) >= floor);
    const tied = arms.flatMap((_, i) => (this.inTie[i] ? [i] : []));
    let rank: number[] | null = null;
    if (tied.length > 1) {
      const useCost = tied.every((i) => arms[i]!.meanCost !== null);
      const useLatency = tied.every((i) => arms[i]!.meanLatency !== null);
      if (useCost || useLatency) {
        const keys = arms.map(
          (a) => [useCost ? (a.meanCost ?? 0) : 0, useLatency ? (a.meanLatency ?? 0) : 0] as const,
        );
        const distinct = [...new Map(keys.map((k) => [`${k[0]}|${k[1]}`, k])).values()].sort(
          (x, y) => x[0] - y[0] || x[1] - y[1],
        );
        rank = keys.map((k) => distinct.findIndex((d) => d[0] === k[0] && d[1] === k[1]));
      }
    }
    this.tieRank = rank;
  }
}

/**
 * Index of the Thompson winner; cost, then latency, break ties within the margin. Every arm's
 * draw of this round is left in `set.draws`.
 */
export function thompsonWinner(set: ArmSet, rng: RandomSource): number {
  const { mains, lowers, uppers, draws, count } = set;
  let bestI = 0;
  let bestDraw = -1.0;
  for (let i = 0; i < count; i++) {
    // draw() inlined: this loop is the cost of a decision.
    let pos = rng.random() * K;
    let j = Math.floor(pos);
    let q: Float64Array;
    if (0 < j && j < K - 1) {
      q = mains[i]!;
    } else {
      q = j === 0 ? lowers[i]! : uppers[i]!;
      pos = (pos - j) * K;
      j = Math.floor(pos);
    }
    const lo = q[j]!;
    const d = lo + (pos - j) * (q[j + 1]! - lo);
    draws[i] = d;
    if (d > bestDraw) {
      bestDraw = d;
      bestI = i;
    }
  }
  const rank = set.tieRank;
  if (rank === null || !set.inTie[bestI]) {
    // No tie to break, or a lucky draw of a path below the margin (Thompson exploration).
    return bestI;
  }
  const inTie = set.inTie;
  let winner = bestI;
  for (let i = 0; i < count; i++) {
    if (
      inTie[i] &&
      (rank[i]! < rank[winner]! || (rank[i] === rank[winner] && draws[i]! > draws[winner]!))
    ) {
      winner = i;
    }
  }
  return winner;
}

/**
 * The chance that a decision probes `arm` (alerted) when the router has made `decisions`:
 * `probeStart` when it first saw the alert, halving every `probeHalfLife` decisions, never
 * under `recoveryProbeRate`.
 */
export function probeRate(arm: Arm, decisions: number, params: SamplingParams): number {
  const floor = params.recoveryProbeRate;
  const age = Math.max(0, decisions - arm.alertedAt);
  const decay = 0.5 ** (age / params.probeHalfLife);
  return floor + Math.max(0.0, params.probeStart - floor) * decay;
}

/**
 * Pick one arm by rules 3-5 above (the caller handles forced and fallback). `decisions` is
 * the router's count of decisions so far: the probes' clock.
 */
export function choose(
  set: ArmSet,
  rng: RandomSource,
  params: SamplingParams,
  decisions = 0,
): [index: number, reason: Reason] {
  const count = set.count;
  if (set.allCold) return [count > 1 ? rng.randrange(count) : 0, "cold_start"];
  if (count > 1) {
    const u = rng.random();
    const arms = set.arms;
    if (u < params.explorationRate) {
      const winner = thompsonWinner(set, rng);
      const draws = set.draws;
      // The other paths without an alert, cold or stale ones preferred: the largest draw.
      let best = -1;
      let bestPreferred = -1;
      for (let i = 0; i < count; i++) {
        const arm = arms[i]!;
        if (i === winner || arm.degrading) continue;
        if (best < 0 || draws[i]! > draws[best]!) best = i;
        if ((arm.cold || arm.stale) && (bestPreferred < 0 || draws[i]! > draws[bestPreferred]!)) bestPreferred = i;
      }
      if (bestPreferred >= 0) return [bestPreferred, "explore"];
      // every other path has an open alert: probes alone look at them
      if (best < 0) return [winner, "exploit"];
      // worth learning only if its draw reached the tie set: else it is known to be worse
      return draws[best]! >= set.tieFloor ? [best, "explore"] : [winner, "exploit"];
    }
    const degrading = set.degrading;
    if (degrading.length > 0) {
      const rates = degrading.map((i) => probeRate(arms[i]!, decisions, params));
      const room = 1.0 - params.explorationRate;
      // Summed in order, as Python 3.11's sum() does: the same total to the last bit.
      let total = 0;
      for (const rate of rates) total += rate;
      const scale = total > room ? room / total : 1.0;
      let left = u - params.explorationRate;
      for (let k = 0; k < degrading.length; k++) {
        left -= rates[k]! * scale;
        if (left < 0) return [degrading[k]!, "explore"];
      }
    }
  }
  return [thompsonWinner(set, rng), "exploit"];
}
