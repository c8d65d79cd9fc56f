/** Where the SDK's warnings go, and warnings logged once per key. */

export interface Logger {
  debug(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Warnings and errors to the console, prefixed; debug lines are dropped. */
export const consoleLogger: Logger = {
  debug: () => undefined,
  warn: (message) => console.warn(`outroute: ${message}`),
  error: (message) => console.error(`outroute: ${message}`),
};

/** Logs nothing (for tests and benchmarks). */
export const silentLogger: Logger = {
  debug: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export class OnceLog {
  private readonly warned = new Set<string>();
  constructor(readonly logger: Logger) {}

  warn(key: string, message: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn(message);
  }
}
