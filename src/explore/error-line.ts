/** The first line of what was thrown: a report's one-line reason (the stack and detail stay in the log). */
export function errorLine(error: unknown): string {
  return error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
}
