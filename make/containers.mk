# Container image and the container test tier (issue 6).
#
# Included from the top Makefile (`include make/containers.mk`, after PY and STAMP are set).
# No registry is reachable here, so tools/containers/build_image.py does everything offline:
# starts Debian's docker.io when no daemon answers (root; its PID goes to
# /run/ember-containers/dockerd.pid, one per machine; test runs hold it so the last one out
# stops it), builds the base image ember-base:bookworm once per machine
# with debootstrap (cached in .tools/containers/ember-base-bookworm.tar), fills the wheelhouse
# (.tools/containers/wheelhouse/) and runs `docker build --network none` with /usr/bin/docker.
#
#   make containers-image          build (or reuse) $(CONTAINER_IMAGE)
#   make containers-test           the container tier: tests/containers (builds the image itself)
#   make containers-stop-docker    stop the dockerd the tool started (by its recorded PID)
#   make containers-clean          remove $(CONTAINER_IMAGE) and the wheelhouse (keeps the base)
#
# The tier needs no prerequisite in `make test`: its session fixture runs the same tool, and
# skips the tier with the reason when Docker cannot run on the machine (exit status 77).

PY              ?= .venv/bin/python
CONTAINER_IMAGE ?= ember:test
CONTAINER_BASE  ?= ember-base:bookworm
CONTAINERS_TOOL := tools/containers/build_image.py

.PHONY: containers-image containers-base containers-test containers-stop-docker containers-clean

containers-image: $(STAMP)
	$(PY) $(CONTAINERS_TOOL) --image $(CONTAINER_IMAGE) --base $(CONTAINER_BASE)

containers-base: $(STAMP)
	$(PY) $(CONTAINERS_TOOL) --base $(CONTAINER_BASE) --step base

containers-test: $(STAMP)
	EMBER_IMAGE=$(CONTAINER_IMAGE) $(PY) -m pytest -q -p no:cacheprovider tests/containers

containers-stop-docker:
	$(PY) $(CONTAINERS_TOOL) --stop-engine

containers-clean:
	-[ -x /usr/bin/docker ] && /usr/bin/docker image rm $(CONTAINER_IMAGE) 2>/dev/null
	-[ -x /usr/bin/docker ] && [ -f .tools/containers/$(subst :,-,$(CONTAINER_IMAGE)).build-stage ] && \
		/usr/bin/docker image rm $$(cat .tools/containers/$(subst :,-,$(CONTAINER_IMAGE)).build-stage) 2>/dev/null
	rm -rf .tools/containers/wheelhouse .tools/containers/$(subst :,-,$(CONTAINER_IMAGE)).build-stage
