"""Who may run what through the operator: the images and ServiceAccounts a cluster admin allows.

Anyone who may create a ServedModel makes the operator run pods; these rules keep those pods to the images
and accounts the admin allows. The Helm chart passes them in (SERVEDMODEL_ALLOWED_*), and can also install
them as a ValidatingAdmissionPolicy that refuses such ServedModels at the API server (charts/.../templates/
admission-policy.yaml), with the same rules and messages. The operator checks them before it renders
anything, so a cluster without that policy, or a ServedModel admitted before it existed, is covered too.
"""

from __future__ import annotations

from dataclasses import dataclass

from .render import image as server_image
from .spec import ServedModelSpec

DEFAULT_ACCOUNT = "default"  # the namespace's account, which a pod runs as when it names none


@dataclass(frozen=True)
class Policy:
    image_prefixes: tuple[str, ...] = ()  # empty: any image
    service_accounts: tuple[str, ...] = ()  # empty: any account

    def violations(self, spec: ServedModelSpec) -> list[str]:
        """What breaks the rules, one sentence each naming the rule; empty when the spec is allowed."""
        problems = []
        if self.image_prefixes:
            images = [("spec.image", server_image(spec), spec.image_set)]
            if spec.export is not None:
                images.append(("spec.export.image", spec.export.image, True))
            if spec.model_image is not None:  # pulled by the kubelet, and run as the modelcar
                images.append(("spec.storage.image.reference", spec.model_image.reference, True))
            if spec.s3 is not None:  # the sync sidecar
                images.append(("spec.storage.s3.syncImage", spec.s3.sync_image, spec.s3.sync_image_set))
            for field, image, written in images:
                if not image.startswith(self.image_prefixes):
                    default = "" if written else " (the operator's default)"
                    problems.append(
                        f"{field} '{image}'{default} is not allowed by the allowedImagePrefixes rule: "
                        f"images must start with one of {', '.join(self.image_prefixes)}"
                    )
        if self.service_accounts:
            account = spec.service_account_name or DEFAULT_ACCOUNT
            if account not in self.service_accounts:
                problems.append(
                    f"spec.serviceAccountName '{account}' is not allowed by the allowedServiceAccounts rule: "
                    f"allowed are {', '.join(self.service_accounts)}"
                )
        return problems
