"""Named datasets: sessions split into train and validation by session."""

from fastapi import APIRouter
from fastapi.responses import Response

from hub.api.deps import ADMIN, AUTH, ERRORS, Parts, not_found
from hub.api.models import NamePath
from hub.fleet.registry import DatasetRequest, create_dataset
from schemas.dataset import DatasetManifest

router = APIRouter(tags=["datasets"])


@router.get("/datasets", summary="Named datasets")
def datasets(hub: Parts) -> list[DatasetManifest]:
    return [DatasetManifest.from_dict(d) for d in hub.catalog.list_datasets()]


@router.post(
    "/datasets",
    summary="Create a dataset from sessions, split into train/val by session",
    status_code=201,
    dependencies=AUTH,
    responses=ERRORS,
)
def new_dataset(hub: Parts, body: DatasetRequest) -> DatasetManifest:
    return create_dataset(hub.catalog, hub.store, body)


@router.get("/datasets/{name}", summary="A dataset's manifest", responses=ERRORS)
def dataset(hub: Parts, name: NamePath) -> DatasetManifest:
    d = hub.catalog.get_dataset(name)
    if d is None:
        raise not_found(f"dataset {name}")
    return DatasetManifest.from_dict(d)


@router.delete(
    "/datasets/{name}",
    summary="Delete a dataset (not its sessions)",
    status_code=204,
    dependencies=ADMIN,
    responses=ERRORS,
)
def delete_dataset(hub: Parts, name: NamePath) -> Response:
    if not hub.catalog.delete_dataset(name):
        raise not_found(f"dataset {name}")
    return Response(status_code=204)
