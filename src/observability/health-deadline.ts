/**
 * How a piece of work ended against its deadline: `'timeout'` when the deadline came first, else its value or error.
 *
 * @internal
 */
export type DeadlineOutcome<T> = 'timeout' | { readonly value: T } | { readonly error: unknown }

/**
 * Starts `work` and settles within `timeoutMs` whatever the work does: the timer is set before the work starts and
 * cleared once either is done. The work is not cancelled: a caller that sees `'timeout'` cleans up after it.
 *
 * @internal
 */
export async function raceDeadline<T>(timeoutMs: number, work: () => Promise<T>): Promise<DeadlineOutcome<T>> {
  let timer: NodeJS.Timeout | undefined
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), timeoutMs)
  })
  const settled = work().then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  )
  const outcome = await Promise.race([settled, deadline])
  clearTimeout(timer)
  return outcome
}
