/* phases.h - split one request's round trip into the phases of input, from its stamps.
 *
 * Client and server run on the same machine, so the client's CLOCK_MONOTONIC stamps and the
 * server's can be compared directly. Durations are nanoseconds; PHASE_UNKNOWN marks a phase
 * the model could not measure (its stamp was 0), which is never shown as a number.
 */
#ifndef IOMODELS_PHASES_H
#define IOMODELS_PHASES_H

#include "proto.h"

#include <stdint.h>

#define PHASE_UNKNOWN INT64_MIN

struct phases {
    int64_t wait_data;  /* t_arrive - t_wait: the process waited, the data were not there yet */
    int64_t notify;     /* data in the kernel, the process not yet told (or not yet asking) */
    int64_t dispatch;   /* t_copy_begin - t_ready: told, but not yet copying */
    int64_t copy_data;  /* t_copy_end - max(t_copy_begin, t_arrive): copying into the process */
    int64_t processing; /* t_reply - t_copy_end: building the reply */
    int64_t round_trip; /* client receive - client send (or intended send, open loop) */
};

/* Derive the phases. Negative differences, which mean the data were there before the wait
 * began (so there was no wait), are 0. */
void phases_derive(const struct proto_stamps *st, uint64_t client_send, uint64_t client_recv,
                   struct phases *out);

#endif
