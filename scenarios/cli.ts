/**
 * Runs a CLI's async main and turns its outcome into the exit status: its return value, or 2 with
 * one "error: …" line when it throws (bad input, an unreadable trace, a replay that diverged).
 */
export function runMain(main: (argv: readonly string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      process.stderr.write(`error: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 2;
    },
  );
}
