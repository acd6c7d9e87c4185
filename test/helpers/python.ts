import { execFileSync } from 'node:child_process'
import { needs, pythonFor } from './tools.js'

/**
 * A python3 that has the WinCloud backend's libraries (Debian's python3-cryptography, python3-passlib,
 * python3-bcrypt), or undefined: the `python-backend` tool of ./tools.ts. A suite that runs Python decides with
 * `needs('python-backend', ...)`; CI installs the libraries, so there a missing one fails the run already here.
 */
export const python = pythonFor('python-backend')
if (process.env.CI) needs('python-backend', 'the tests that run the Python backend')

/** Runs a Python snippet with JSON input on stdin (as `data`) and returns its JSON output. */
export function runPython<T>(code: string, data: unknown = null): T {
  if (python === undefined) throw new Error('no python3 with the backend libraries')
  const program = `import json, sys\ndata = json.loads(sys.stdin.read())\n${code}`
  const out = execFileSync(python, ['-c', program], { input: JSON.stringify(data), encoding: 'utf8' })
  return JSON.parse(out) as T
}
