// node:url for the browser build.
export function fileURLToPath(u: string | URL): string {
  return decodeURIComponent(new URL(String(u)).pathname);
}
export function pathToFileURL(p: string): URL {
  return new URL(`file://${p}`);
}
export default { fileURLToPath, pathToFileURL };
