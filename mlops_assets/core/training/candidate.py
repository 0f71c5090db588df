"""A candidate model from its training set: plan the manifest, train and store the pipeline with its monitoring
reference, load it back verified, and check it rebuilds identically from its lineage."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from dataclasses import dataclass

import pandas as pd

from mlops_assets.core.ingestion.volume import VolumeBaseline, row_counts
from mlops_assets.core.monitoring import reports as monitoring
from mlops_assets.core.monitoring.reference import MonitoringReference
from mlops_assets.core.training import trainer as training
from mlops_assets.core.training.manifest import TrainingManifest, plan_training_window
from mlops_assets.core.training.reproducibility import compare_predictions, retrain_from_lineage
from mlops_assets.core.registry.artifacts import ArtifactStore, StoredArtifact
from mlops_assets.core.evaluation.report import latency_ms_per_1k
from mlops_assets.core.config.spec import DatasetSpec
from mlops_assets.core.io.storage import PartitionStore, frame_fingerprint

LABELED = "labeled_examples"


def plan_training_set(store: PartitionStore, spec: DatasetSpec, as_of: str) -> TrainingManifest:
    """The manifest of the window ending at `as_of`: exact partitions and their content hashes, no data."""
    available = [dt.date.fromisoformat(p) for p in store.partitions(LABELED)]
    window = plan_training_window(dt.date.fromisoformat(as_of), available, spec.training)
    versions = {d.isoformat(): frame_fingerprint(store.read(LABELED, d.isoformat())) for d in window.all_days}
    return window.manifest(versions)


def load_split(store: PartitionStore, manifest: TrainingManifest, split: str, verify: bool = True) -> pd.DataFrame:
    """The labeled rows of one split; with `verify`, refuses partitions whose content changed since the
    manifest was written (a rebuild must see the same data, or say that it cannot)."""
    frames = []
    for day in manifest.days(split):
        key = day.isoformat()
        frame = store.read(LABELED, key)
        if verify and frame_fingerprint(frame) != manifest.data_versions[key]:
            raise ValueError(f"{LABELED} partition {key} changed since the manifest of {manifest.as_of} was "
                             f"written (data version {manifest.data_versions[key][:12]}…); cannot reproduce")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class CandidateRecord:
    version: str
    as_of: str
    artifact: StoredArtifact
    lineage: dict
    train_seconds: float = 0.0
    reference: StoredArtifact | None = None  # the version's monitoring reference, stored beside the artifact

    def to_dict(self) -> dict:
        return {"version": self.version, "as_of": self.as_of, "artifact": vars(self.artifact), "lineage": self.lineage,
                "train_seconds": self.train_seconds,
                "reference": vars(self.reference) if self.reference is not None else None}

    @classmethod
    def from_dict(cls, raw: dict) -> "CandidateRecord":
        reference = raw.get("reference")
        return cls(raw["version"], raw["as_of"], StoredArtifact(**raw["artifact"]), raw["lineage"],
                   raw.get("train_seconds", 0.0), StoredArtifact(**reference) if reference else None)


def train_candidate(store: PartitionStore, artifacts: ArtifactStore, spec: DatasetSpec,
                    manifest: TrainingManifest) -> tuple[CandidateRecord, training.TrainedModel]:
    """Train on the manifest's train split, store the pipeline and its monitoring reference (fitted on the
    same rows, calibrated on the validation split) side by side in the artifact store."""
    started = time.perf_counter()
    model = training.train(spec, spec.training, load_split(store, manifest, "train"), manifest=manifest)
    seconds = time.perf_counter() - started
    artifact = artifacts.save(model.pipeline, spec.name)
    version = f"{spec.name}-{manifest.as_of}-{artifact.sha256[:8]}"
    reference = artifacts.save_json(monitoring_reference(store, spec, manifest, model.pipeline).to_dict(), spec.name)
    return CandidateRecord(version, manifest.as_of, artifact, model.lineage.to_dict(), seconds, reference), model


def monitoring_reference(store: PartitionStore, spec: DatasetSpec, manifest: TrainingManifest,
                         pipeline) -> MonitoringReference:
    """The drift profile, calibrator and baselines monitoring compares each served day with, and the rows per
    day of the window, which ingestion's volume check expects while this version is champion."""
    validation = load_split(store, manifest, "validation")
    latency = latency_ms_per_1k(pipeline, spec, validation)
    reference = monitoring.build_reference(spec, pipeline, load_split(store, manifest, "train"), validation, latency)
    volume = VolumeBaseline(row_counts(store, "feature_table", sorted(manifest.data_versions)))
    return dataclasses.replace(reference, volume=volume)


def load_candidate(artifacts: ArtifactStore, record: CandidateRecord):
    """The candidate's pipeline, unpickled only after its checksum matches the record."""
    return artifacts.load(record.artifact.path, record.artifact.sha256)


def check_reproducible(store: PartitionStore, spec: DatasetSpec, record: CandidateRecord, pipeline):
    lineage = training.Lineage.from_dict(record.lineage)
    rebuilt = retrain_from_lineage(
        spec, lineage, lambda days: load_split(store, lineage.manifest, "train"), git_commit=lineage.git_commit)
    benchmark = load_split(store, lineage.manifest, "benchmark")
    return compare_predictions(training.TrainedModel(pipeline, lineage), rebuilt, benchmark)
