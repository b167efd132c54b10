// Dawn's adapter discovery clamps two limits that Vulkan drivers report above what Dawn supports and
// says so on stderr, from native code (dawn::WarningLog in Limits.cpp, a plain fprintf to fd 2):
//   Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.
//   Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.
// No toggle, environment variable or instance option of the `webgpu` package turns them off, and
// JavaScript cannot redirect fd 2 around the call, so bin/ardgpu.mjs runs the CLI in a child process
// and passes the child's stderr through this filter.

export const DAWN_NOTICE =
  /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.\r?$/;
const PREFIX = 'Warning: maxDynamic';

/**
 * A stream filter: `feed(text)` returns the part of `text` to pass on, dropping whole lines that
 * are Dawn's notices; `flush()` returns what is still held at the end of the stream. Text is held
 * only while the current line could still become a notice, so a progress bar redrawn with `\r`
 * (no newline) is passed on at once.
 */
export function dawnNoticeFilter() {
  let held = ''; // the current line so far, while it may still be a notice
  let passing = false; // the current line cannot be a notice: pass it on up to its newline
  return {
    feed(text) {
      let out = '';
      for (const piece of text.split(/(?<=\n)/)) {
        const ends = piece.endsWith('\n');
        if (passing) {
          out += piece;
        } else {
          const line = held + piece;
          held = '';
          if (ends) {
            if (!DAWN_NOTICE.test(line.slice(0, -1))) out += line;
          } else if (PREFIX.startsWith(line) || line.startsWith(PREFIX)) {
            held = line;
          } else {
            out += line;
            passing = true;
          }
        }
        if (ends) passing = false;
      }
      return out;
    },
    flush() {
      const rest = DAWN_NOTICE.test(held) ? '' : held;
      held = '';
      return rest;
    },
  };
}
