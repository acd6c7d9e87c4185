import { execFileSync } from 'node:child_process'

/**
 * A python3 that has the WinCloud backend's libraries (Debian's python3-cryptography, python3-passlib,
 * python3-bcrypt), or undefined. CI installs them, so there a missing one fails the run instead of skipping.
 */
function findPython(): string | undefined {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    try {
      execFileSync(candidate, ['-c', 'import cryptography, passlib, bcrypt'], { stdio: 'ignore' })
      return candidate
    } catch {
      // try the next one
    }
  }
  if (process.env.CI) throw new Error('python3 with cryptography, passlib and bcrypt is required in CI')
  return undefined
}

export const python = findPython()

/** Runs a Python snippet with JSON input on stdin (as `data`) and returns its JSON output. */
export function runPython<T>(code: string, data: unknown = null): T {
  if (python === undefined) throw new Error('no python3 with the backend libraries')
  const program = `import json, sys\ndata = json.loads(sys.stdin.read())\n${code}`
  const out = execFileSync(python, ['-c', program], { input: JSON.stringify(data), encoding: 'utf8' })
  return JSON.parse(out) as T
}
