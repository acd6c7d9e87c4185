import { InvalidCursorError, ValidationError } from '../errors/index.js'
import { displayKey } from '../internal/text.js'
import { PAGE_SIZE } from './page.js'

/** The deepest offset a page may ask for; deeper pages should use cursors. */
const MAX_OFFSET = 10_000_000

/**
 * A row count (`limit`, `page.size`): 20 by default, 1 to 100.
 *
 * @internal
 */
export function checkSize(size: unknown, field: string): number {
  if (size === undefined) return PAGE_SIZE.default
  if (typeof size !== 'number' || !Number.isInteger(size) || size < 1 || size > PAGE_SIZE.max) {
    throw new ValidationError(`${field} must be an integer from 1 to ${PAGE_SIZE.max}.`, [
      { field, message: `must be an integer from 1 to ${PAGE_SIZE.max}`, keyword: 'range' },
    ])
  }
  return size
}

function checkPageKeys(request: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    throw new ValidationError('page must be an object.', [{ field: 'page', message: 'must be an object' }])
  }
  for (const key of Object.keys(request)) {
    if (!allowed.includes(key)) {
      const field = `page.${displayKey(key)}`
      throw new ValidationError(`${field} is not a page option.`, [{ field, message: 'is not a page option' }])
    }
  }
  return request as Record<string, unknown>
}

/**
 * A checked offset page request: a page number from 1 (not absurdly deep), a size, and whether the total must be
 * exact.
 *
 * @internal
 */
export function checkOffsetRequest(request: unknown): { number: number; size: number; exactTotal: boolean } {
  const page = checkPageKeys(request, ['number', 'size', 'exactTotal'])
  const size = checkSize(page.size, 'page.size')
  const number = page.number
  if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || (number - 1) * size > MAX_OFFSET) {
    throw new ValidationError('page.number must be a whole number from 1 (and not absurdly deep).', [
      { field: 'page.number', message: `must be an integer from 1 to ${Math.floor(MAX_OFFSET / size) + 1}` },
    ])
  }
  if (page.exactTotal !== undefined && typeof page.exactTotal !== 'boolean') {
    throw new ValidationError('page.exactTotal must be true or false.', [
      { field: 'page.exactTotal', message: 'must be true or false' },
    ])
  }
  return { number, size, exactTotal: page.exactTotal === true }
}

/**
 * A checked keyset page request: a size, and at most one of `after` and `before` (strings; what they hold is the
 * cursor codec's to check).
 *
 * @internal
 */
export function checkKeysetRequest(request: unknown): { size: number; after?: string; before?: string } {
  const page = checkPageKeys(request, ['size', 'after', 'before'])
  const size = checkSize(page.size, 'page.size')
  if (page.after !== undefined && page.before !== undefined) {
    throw new ValidationError('page takes after or before, not both.', [
      { field: 'page', message: 'takes after or before, not both' },
    ])
  }
  for (const key of ['after', 'before'] as const) {
    if (page[key] !== undefined && typeof page[key] !== 'string') throw new InvalidCursorError()
  }
  return { size, after: page.after as string | undefined, before: page.before as string | undefined }
}
