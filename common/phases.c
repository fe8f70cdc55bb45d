/* phases.c - the timing arithmetic (see phases.h and docs/protocol.md). */
#include "phases.h"

static int64_t span(uint64_t from, uint64_t to)
{
    if (from == 0 || to == 0)
        return PHASE_UNKNOWN;
    return to > from ? (int64_t)(to - from) : 0;
}

void phases_derive(const struct proto_stamps *st, uint64_t client_send, uint64_t client_recv,
                   struct phases *out)
{
    /* When readiness comes back from the copy call itself (blocking recv, or a busy-polling
     * recv that finally succeeded), the process was never told before copying: there is no
     * separate notification, and the copy-data span starts when the data arrived. */
    int told_first = st->copy_begin == 0 || st->ready <= st->copy_begin;
    out->wait_data = span(st->wait, st->arrive);
    /* Not told first: the data sat in the kernel until the copy call began (0 when the call
     * was already waiting, as a blocking recv usually is; a busy-polling sweep's lap). */
    out->notify = told_first ? span(st->arrive, st->ready)
                             : (st->arrive ? span(st->arrive, st->copy_begin) : PHASE_UNKNOWN);
    out->dispatch = told_first ? span(st->ready, st->copy_begin) : 0;
    uint64_t copy_from = st->copy_begin;
    if (copy_from != 0 && st->arrive > copy_from)
        copy_from = st->arrive;
    out->copy_data = span(copy_from, st->copy_end);
    out->processing = span(st->copy_end ? st->copy_end : st->ready, st->reply);
    out->round_trip = span(client_send, client_recv);
}
