//! `roster.v1.DeviceService`.
use tonic::{Request, Response, Status};

use super::caller;
use super::convert;
use crate::app::App;
use crate::domain::device::NewDevice;
use crate::grpc::pb::{self, device_service_server::DeviceService};

pub struct DeviceApi {
    app: App,
}

impl DeviceApi {
    pub fn new(app: App) -> Self {
        DeviceApi { app }
    }
}

#[tonic::async_trait]
impl DeviceService for DeviceApi {
    async fn create_device(
        &self,
        request: Request<pb::CreateDeviceRequest>,
    ) -> Result<Response<pb::CreateDeviceResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        let new = NewDevice {
            id: req.id,
            push_provider: req.push_provider,
            push_provider_name: req.push_provider_name,
            voip: req.voip,
        };
        let device = self.app.create_device(&caller, &req.user_id, new).await?;
        Ok(Response::new(pb::CreateDeviceResponse {
            device: Some(convert::device(device)),
        }))
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let caller = caller(&request);
        let devices = self
            .app
            .list_devices(&caller, &request.into_inner().user_id)
            .await?;
        Ok(Response::new(pb::ListDevicesResponse {
            devices: devices.into_iter().map(convert::device).collect(),
        }))
    }

    async fn delete_device(
        &self,
        request: Request<pb::DeleteDeviceRequest>,
    ) -> Result<Response<pb::DeleteDeviceResponse>, Status> {
        let caller = caller(&request);
        let req = request.into_inner();
        self.app
            .delete_device(&caller, &req.user_id, &req.id)
            .await?;
        Ok(Response::new(pb::DeleteDeviceResponse {}))
    }
}
