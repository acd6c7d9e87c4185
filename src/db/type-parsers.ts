import pg from 'pg'

const INT8 = 20
const NUMERIC = 1700

const keepText = (value: string): string => value

/**
 * The `types` option given to every `pg` client of a database: bigint (`int8`) and `numeric` stay strings, so no
 * value silently loses precision as a JavaScript number, whatever the host did to `pg.types` globally. Every
 * other type uses pg's parsers.
 *
 * @internal
 */
export const typeParsers = {
  getTypeParser(oid: number, format?: 'text' | 'binary'): (value: string) => unknown {
    if ((oid === INT8 || oid === NUMERIC) && format !== 'binary') return keepText
    // pg-types declares its parsers as returning any.
    const lookup = pg.types.getTypeParser as (id: number, format: 'text' | 'binary') => (value: string) => unknown
    return lookup(oid, format ?? 'text')
  },
}
