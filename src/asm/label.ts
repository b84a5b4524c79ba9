/**
 * A symbolic position in one Assembler's output. Create with
 * `Assembler.newLabel()`, fix with `Assembler.bind()`. Labels are only valid
 * in the assembler that created them.
 */
export class Label {
  /**
   * @param owner  the creating assembler; checked on use so a label cannot leak between images
   * @param id     unique within the owner
   * @param name   user-given name, or a generated `.L<id>` for anonymous labels
   */
  constructor(
    readonly owner: object,
    readonly id: number,
    readonly name: string,
    readonly anonymous: boolean,
  ) {}

  toString(): string {
    return this.name;
  }
}
