/**
 * A small seeded random number generator (xoshiro128**), so that a router built with a seed
 * decides the same way every run. Sampling only needs `random()` (a uniform in [0, 1)) and
 * `randrange(n)`; anything with those two methods can stand in for it (the shared test
 * vectors use a scripted one).
 */

import { randomBytes } from "node:crypto";

import { ArgumentError } from "./errors.js";

export interface RandomSource {
  /** A uniform variate in [0, 1). */
  random(): number;
  /** An integer in [0, n), from one uniform variate: `floor(random() * n)`. */
  randrange(n: number): number;
}

const TWO_POW_26 = 67108864;
const TWO_POW_53 = 9007199254740992;

function splitmix32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x9e3779b9) >>> 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** xoshiro128**: 32-bit words, period 2^128 - 1; two words make one 53-bit double. */
export class Rng implements RandomSource {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed?: number) {
    let words: number[];
    if (seed === undefined) {
      const bytes = randomBytes(16);
      words = [0, 4, 8, 12].map((i) => bytes.readUInt32LE(i));
    } else {
      if (!Number.isSafeInteger(seed)) {
        throw new ArgumentError(`seed must be an integer, got ${String(seed)}`);
      }
      const next = splitmix32((seed ^ Math.floor(seed / 4294967296)) >>> 0);
      words = [next(), next(), next(), next()];
    }
    if (!words.some((w) => w !== 0)) words[0] = 1;
    [this.s0, this.s1, this.s2, this.s3] = words as [number, number, number, number];
  }

  private nextWord(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  random(): number {
    const high = this.nextWord() >>> 5; // 27 bits
    const low = this.nextWord() >>> 6; // 26 bits
    return (high * TWO_POW_26 + low) / TWO_POW_53;
  }

  randrange(n: number): number {
    return Math.floor(this.random() * n);
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
