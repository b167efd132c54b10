// One-line, user-facing errors. The CLI prints `error: <message>` for these (no stack unless --debug)
// and exits 1; anything else is a bug and is reported with its stack.
export class ArdError extends Error {
  constructor(message: string, readonly exitCode = 1) {
    super(message);
    this.name = 'ArdError';
  }
}

/** A usage error (bad flag or argument): exit code 2. */
export class UsageError extends ArdError {
  constructor(message: string) {
    super(message, 2);
    this.name = 'UsageError';
  }
}

export function describeError(e: unknown): string {
  if (e instanceof Error) return e.message.split('\n')[0] ?? String(e);
  return String(e);
}
