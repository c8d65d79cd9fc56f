/**
 * What the integration scripts share. They are run by tests/integration/test_typescript_sdk.py
 * against real servers, configured through the OUTROUTE_* variables that `Router.fromEnv`
 * reads; each prints one JSON line of results on stdout and exits non-zero on a failed check.
 */

import { createInterface } from "node:readline";

export function fail(message: string): never {
  process.stderr.write(`FAILED: ${message}\n`);
  process.exit(1);
}

export function check(condition: boolean, message: string): void {
  if (!condition) fail(message);
}

export function number(name: string, fallback: number): number {
  const value = process.env[name];
  return value === undefined ? fallback : Number(value);
}

/** Poll `probe` until it holds or `seconds` pass. */
export async function waitUntil(probe: () => boolean | Promise<boolean>, seconds: number, what: string): Promise<void> {
  const deadline = Date.now() + seconds * 1000;
  while (!(await probe())) {
    if (Date.now() > deadline) fail(`timed out after ${seconds} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

let input: ReturnType<typeof createInterface> | null = null;
let lines: AsyncIterator<string> | null = null;

/** Tell the test a step is done, and wait for its go-ahead (a line on stdin). */
export async function step(name: string, details: object = {}): Promise<void> {
  process.stdout.write(`${JSON.stringify({ step: name, ...details })}\n`);
  if (lines === null) {
    input = createInterface({ input: process.stdin });
    lines = input[Symbol.asyncIterator]();
  }
  const next = await lines.next();
  if (next.done) fail(`stdin closed while waiting after step ${name}`);
}

/** The results; the process then exits by itself (a handle left open would keep it alive). */
export function result(value: object): void {
  process.stdout.write(`${JSON.stringify({ result: value })}\n`);
  input?.close();
  process.stdin.destroy();
}
