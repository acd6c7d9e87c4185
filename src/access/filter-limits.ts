/**
 * Where a filter is refused: its limits and the count kept against them while it is walked, the place of a node in
 * it, and the ValidationError that names that place.
 */
import { ValidationError } from '../errors/index.js'
import { displayKey } from '../internal/text.js'

/**
 * Limits that keep a filter from becoming a denial of service. Every part of a filter counts against one of them,
 * empty groups included, and they are checked while the filter is walked, before any SQL exists:
 *
 * - `depth`: levels of `and` / `or` / `not` below the top of the filter;
 * - `conditions`: conditions in the whole filter (each operator on a property is one, a plain value or `null` is
 *   one), and entries of one `and` / `or`;
 * - `nodes`: groups, properties and operators in the whole filter: every group (the top one, each entry of an
 *   `and` / `or`, each `not`, empty ones included), every property and every operator;
 * - `listLength`: values in one `in` or `notIn`;
 * - `values`: values in the whole filter: each plain value and operand, each element of an `in` / `notIn`, both ends
 *   of a `between`;
 * - `stringLength`: characters in one string value.
 *
 * @example
 * ```ts
 * const ids = wanted.slice(0, FILTER_LIMITS.listLength)
 * ```
 */
export const FILTER_LIMITS = Object.freeze({
  depth: 6,
  conditions: 64,
  nodes: 512,
  listLength: 1_000,
  values: 4_096,
  stringLength: 4_096,
})

/**
 * Where a node is in a filter, as `filter.or[2].name.in[7]`: built as a chain while walking, and rendered only for
 * an error message (a filter within the limits never pays for the text).
 *
 * @internal
 */
export class Path {
  constructor(
    readonly parent: Path | string,
    readonly key: string | number,
  ) {}

  toString(): string {
    return typeof this.key === 'number'
      ? `${String(this.parent)}[${this.key}]`
      : `${String(this.parent)}.${displayKey(this.key)}`
  }
}

/** A place in a filter: a Path, or its text. @internal */
export type Field = Path | string

/** Refuses a filter at a place, naming the place (never the value). @internal */
export function invalid(at: Field, message: string): never {
  const field = String(at)
  throw new ValidationError(`Invalid filter: ${field} ${message}.`, [{ field, message, keyword: 'filter' }])
}

/** What one walk of a filter has counted so far against {@link FILTER_LIMITS}. @internal */
export interface Counter {
  conditions: number
  nodes: number
  values: number
}

/** Counts a group, a property or an operator. @internal */
export function countNode(counter: Counter, at: Field): void {
  counter.nodes += 1
  if (counter.nodes > FILTER_LIMITS.nodes) {
    invalid(at, `makes the filter larger than ${FILTER_LIMITS.nodes} groups, properties and operators`)
  }
}

/** Counts a condition and the values it binds. @internal */
export function countCondition(counter: Counter, at: Field, values: number): void {
  counter.conditions += 1
  if (counter.conditions > FILTER_LIMITS.conditions) {
    invalid(at, `makes the filter longer than ${FILTER_LIMITS.conditions} conditions`)
  }
  countValues(counter, at, values)
}

function countValues(counter: Counter, at: Field, values: number): void {
  counter.values += values
  if (counter.values > FILTER_LIMITS.values)
    invalid(at, `makes the filter hold more than ${FILTER_LIMITS.values} values`)
}
