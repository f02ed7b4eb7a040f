//! `roster.v1.DeviceService`.
use tonic::{Request, Response, Status};

use super::caller;
use super::convert;
use crate::domain::device::{NewDevice, device_id_problem};
use crate::domain::event::Actor;
use crate::domain::ids::check_id;
use crate::error::Error;
use crate::pb::{self, device_service_server::DeviceService};
use crate::store::Store;
use crate::tasks::Hub;

pub struct DeviceApi {
    store: Store,
    hub: Hub,
}

impl DeviceApi {
    pub fn new(store: Store, hub: Hub) -> Self {
        DeviceApi { store, hub }
    }
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn create_device(
        &self,
        request: Request<pb::CreateDeviceRequest>,
    ) -> Result<Response<pb::CreateDeviceResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let req = request.into_inner();
        check_id("user_id", &req.user_id)?;
        let new = NewDevice {
            id: req.id,
            push_provider: req.push_provider,
            push_provider_name: req.push_provider_name,
            voip: req.voip,
        };
        let device = self.store.create_device(&req.user_id, new, &actor).await?;
        self.hub.events_appended();
        Ok(Response::new(pb::CreateDeviceResponse {
            device: Some(convert::device(device)),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let req = request.into_inner();
        check_id("user_id", &req.user_id)?;
        let devices = self.store.list_devices(&req.user_id).await?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(convert::device).collect(),
        }))
    }

    async fn delete_device(
        &self,
        request: Request<pb::DeleteDeviceRequest>,
    ) -> Result<Response<pb::DeleteDeviceResponse>, Status> {
        let actor = Actor::new(caller(&request), None);
        let req = request.into_inner();
        check_id("user_id", &req.user_id)?;
        if let Some(problem) = device_id_problem(&req.id) {
            return Err(Error::invalid("id", problem).into());
        }
        self.store
            .delete_device(&req.user_id, &req.id, &actor)
            .await?;
        self.hub.events_appended();
        Ok(Response::new(pb::DeleteDeviceResponse {}))
    }
}
