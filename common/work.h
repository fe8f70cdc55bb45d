/* work.h - --work: background computation a server does while it is not serving.
 *
 * The models differ in whether the process is free while its data are on the way. With
 * --work, every server spends the moments it does not serve on work_unit(), a fixed piece
 * of computation (hashing a 4 KiB buffer, a few microseconds), counted in STATS as
 * work_units. A blocking model can only do a unit between its calls; a model that never
 * blocks, or that asks the kernel to tell it later, can do units while it waits.
 */
#ifndef IOMODELS_WORK_H
#define IOMODELS_WORK_H

/* Do one unit of work and count it. */
void work_unit(void);

#endif
