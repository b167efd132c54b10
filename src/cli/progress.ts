// Progress for long stages, on stderr: a redrawn bar (count, rate, ETA) on a terminal, a plain
// line every few seconds otherwise, nothing with --quiet. stdout stays clean for --json.
export interface ProgressOptions {
  quiet?: boolean;
  unit?: string;
  /** Seconds between plain lines when stderr is not a terminal. */
  every?: number;
}

export class Progress {
  private start = Date.now();
  private last = 0;
  private done = 0;
  private readonly tty = Boolean(process.stderr.isTTY);
  constructor(private label: string, private total: number, private opts: ProgressOptions = {}) {}

  update(done: number, extra = ''): void {
    this.done = done;
    if (this.opts.quiet) return;
    const now = Date.now();
    const minGap = this.tty ? 100 : (this.opts.every ?? 5) * 1000;
    if (now - this.last < minGap && done < this.total) return;
    this.last = now;
    const line = this.format(extra);
    if (this.tty) process.stderr.write(`\r\x1b[2K${line}`);
    else process.stderr.write(`${line}\n`);
  }

  tick(n = 1, extra = ''): void {
    this.update(this.done + n, extra);
  }

  finish(extra = ''): void {
    if (this.opts.quiet) return;
    this.last = 0;
    const line = this.format(extra);
    process.stderr.write(this.tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
  }

  private format(extra: string): string {
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0 ? this.done / secs : 0;
    const frac = this.total > 0 ? Math.min(1, this.done / this.total) : 0;
    const eta = rate > 0 && this.total > this.done ? (this.total - this.done) / rate : 0;
    const width = 24;
    const bar = this.tty ? `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ` : '';
    const unit = this.opts.unit ?? 'it';
    return `${this.label} ${bar}${this.done}/${this.total} ${(frac * 100).toFixed(0)}% ${fmtRate(rate)} ${unit}/s ETA ${fmtTime(eta)}${extra ? ` ${extra}` : ''}`;
  }
}

function fmtRate(r: number): string {
  return r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2);
}

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const m = Math.floor(s / 60);
  const sec = Math.round(s % 60);
  return m ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}
