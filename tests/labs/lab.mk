# lab.mk - build a student's server with the Makefile's own flags and common/ objects. Read
# after the Makefile, never alone (tests/labs/grade-N does this):
#
#   make -C REPO -f Makefile -f tests/labs/lab.mk BUILD=DIR/build \
#        LAB_MODEL=select LAB_SRC=DIR/select.c [LAB_LIBS=-luring] lab-server [lab-burst]
#
# lab-server: DIR/build/obj/lab/select.o from DIR/select.c, linked with DIR/build/obj/common/*
#             (built from the repository's common/) into DIR/build/select.
# lab-burst:  DIR/build/burst, the pipelined-burst client of lab 4 (tests/labs/burst.c).
#
# A student's file keeps the models' includes ("../common/conn.h"): -iquote models/ finds them
# wherever DIR is. The binary is linked by a target of its own, not $(BUILD)/$(LAB_MODEL), so
# that the Makefile's rule for the repository's models/select.c never applies.

LAB_OBJ := $(BUILD)/obj/lab/$(LAB_MODEL).o

$(LAB_OBJ): $(LAB_SRC) $(BUILD)/.flags
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -iquote $(CURDIR)/models -MMD -MP -c $(LAB_SRC) -o $@

lab-server: $(LAB_OBJ) $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $(LAB_OBJ) $(COMMON_OBJ) -o $(BUILD)/$(LAB_MODEL) $(LAB_LIBS)

$(BUILD)/burst: $(BUILD)/obj/tests/labs/burst.o $(COMMON_OBJ)
	$(CC) $(LDFLAGS) $^ -o $@

lab-burst: $(BUILD)/burst

.PHONY: lab-server lab-burst
