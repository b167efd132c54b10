// One GPU work queue for the server: jobs run one at a time in arrival order, so concurrent
// requests never interleave GPU work (the model's hooks and KV cache are shared) and memory holds
// one job's tensors at a time. A full queue refuses new work instead of growing without bound.
import { ArdError } from '../util/errors.js';

export class WorkQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private running = false;
  /** Jobs finished (ok or not): for tests and the status endpoint. */
  done = 0;

  constructor(readonly maxPending = 64) {}

  /** Jobs queued or running. */
  get pending(): number {
    return this.waiting + (this.running ? 1 : 0);
  }

  /** Runs `job` after every job queued before it; rejects at once when the queue is full. */
  run<T>(job: () => Promise<T>): Promise<T> {
    if (this.waiting >= this.maxPending) return Promise.reject(new ArdError(`server busy: ${this.waiting} jobs waiting (try again later)`));
    this.waiting++;
    const p = this.tail.then(async () => {
      this.waiting--;
      this.running = true;
      try {
        return await job();
      } finally {
        this.running = false;
        this.done++;
      }
    });
    this.tail = p.catch(() => undefined);
    return p;
  }
}
