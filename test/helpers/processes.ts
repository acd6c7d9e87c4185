import { readdirSync, readFileSync } from 'node:fs'

/** A running process as /proc shows it. */
export interface ProcInfo {
  readonly pid: number
  readonly ppid: number
  readonly argv: readonly string[]
}

/** Every process on the machine, read from /proc (Linux). */
export function processes(): ProcInfo[] {
  const found: ProcInfo[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean)
      // The command name in /proc/<pid>/stat is in parentheses and may contain spaces; ppid follows it.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      found.push({ pid: Number(entry), ppid, argv })
    } catch {
      // The process ended while we looked.
    }
  }
  return found
}
