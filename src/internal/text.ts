const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/**
 * Whether `text` encodes as UTF-8 as itself: no lone surrogate (each would become U+FFFD, so different strings would
 * share an encoding). `String.prototype.isWellFormed` where the runtime has it, the same check by regular expression
 * otherwise.
 *
 * @internal
 */
export function isWellFormedText(text: string): boolean {
  const native = (text as unknown as { isWellFormed?: () => boolean }).isWellFormed
  return native === undefined ? !LONE_SURROGATE.test(text) : native.call(text)
}

/**
 * Whether `text` can be stored in PostgreSQL text and jsonb and hashed as itself: well formed (see
 * {@link isWellFormedText}) and free of NUL, which PostgreSQL text cannot hold.
 *
 * @internal
 */
export function isStorableText(text: string): boolean {
  return !text.includes('\0') && isWellFormedText(text)
}

const SAFE_KEY = /^[A-Za-z_$][A-Za-z0-9_$]{0,63}$/

/**
 * A key of caller input as an error message may show it: the key itself when it is a plain identifier of at most 64
 * characters, `(invalid key)` otherwise, so no caller text of any length or content is echoed.
 *
 * @internal
 */
export const displayKey = (key: string): string => (SAFE_KEY.test(key) ? key : '(invalid key)')
