/** Checks of the Router's arguments: paths, and the paths a decision offers. */

import type { PathFn } from "./callables.js";
import { ArgumentError } from "./errors.js";
import { checkIdentifier, MAX_CANDIDATES, show } from "./validate.js";

/** Names of the paths, and their functions when they are functions. */
export function normalizePaths(paths: unknown): [string[], PathFn[] | null] {
  if (!Array.isArray(paths)) {
    throw new ArgumentError(`paths must be an array of names or functions, got ${show(paths)}`);
  }
  if (paths.length === 0) throw new ArgumentError("paths must not be empty");
  if (paths.length > MAX_CANDIDATES) {
    throw new ArgumentError(`paths may hold at most ${MAX_CANDIDATES} entries, got ${paths.length}`);
  }
  const names: string[] = [];
  const fns: PathFn[] = [];
  for (const item of paths as unknown[]) {
    if (typeof item === "string") {
      names.push(checkIdentifier("path", item));
    } else if (Array.isArray(item) && item.length === 2 && typeof item[1] === "function") {
      names.push(checkIdentifier("path name", item[0]));
      fns.push(item[1] as PathFn);
    } else if (typeof item === "function") {
      if (!item.name) {
        throw new ArgumentError(
          "cannot name an anonymous function path; pass [name, fn] pairs instead",
        );
      }
      names.push(checkIdentifier("path (function name)", item.name));
      fns.push(item as PathFn);
    } else {
      throw new ArgumentError(`each path must be a name (string) or a function, got ${show(item)}`);
    }
  }
  if (fns.length > 0 && fns.length !== names.length) {
    throw new ArgumentError("paths must be all names (strings) or all functions, not a mix");
  }
  const repeated = [...new Set(names.filter((n, i) => names.indexOf(n) !== i))].sort();
  if (repeated.length > 0) throw new ArgumentError(`paths must be unique; repeated: ${repeated.join(", ")}`);
  return [names, fns.length > 0 ? fns : null];
}

/** The indexes of the paths named in `among`, in the router's order. */
export function checkAmong(among: unknown, index: ReadonlyMap<string, number>, paths: readonly string[]): number[] {
  if (!Array.isArray(among)) throw new ArgumentError(`among must be an array of path names, got ${show(among)}`);
  const chosen = new Set<number>();
  for (const name of among as unknown[]) {
    const i = typeof name === "string" ? index.get(name) : undefined;
    if (i === undefined) {
      throw new ArgumentError(`among: ${show(name)} is not one of paths ${paths.join(", ")}`);
    }
    chosen.add(i);
  }
  if (chosen.size === 0) throw new ArgumentError("among must name at least one path");
  return [...chosen].sort((a, b) => a - b);
}
