"""All registrations (experiments, task) in one import, for train.py and tools."""

# pylint: disable=unused-import
from maskconver.configs import experiments
from maskconver.tasks import maskconver_task
