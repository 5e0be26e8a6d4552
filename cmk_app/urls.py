from django.urls import path

from cmk_app import views

app_name = "cmk"
urlpatterns = [
    path("cmk/", views.BindingListView.as_view(), name="binding-list"),
    path("cmk/attach/", views.AttachView.as_view(), name="attach"),
    path("cmk/<int:binding_id>/", views.BindingDetailView.as_view(), name="binding-detail"),
    path("cmk/<int:binding_id>/detach/", views.BindingDetachView.as_view(),
         name="binding-detach"),
    path("hsms/<str:hsm_id>/keys/<keyname:name>/usage/", views.KeyUsageView.as_view(),
         name="key-usage"),
    path("hsms/<str:hsm_id>/resource/", views.HsmResourceView.as_view(), name="hsm-resource"),
    path("hsms/<str:hsm_id>/resource/network/", views.HsmNetworkView.as_view(),
         name="hsm-network"),
    path("hsms/<str:hsm_id>/resource/purge-protection/", views.HsmPurgeProtectionView.as_view(),
         name="hsm-purge-protection"),
    path("hsms/<str:hsm_id>/resource/private-endpoints/<str:name>/",
         views.HsmPrivateEndpointView.as_view(), name="hsm-private-endpoint"),
    path("hsms/<str:hsm_id>/resource/replicas/", views.HsmReplicaAddView.as_view(),
         name="hsm-replica-add"),
    path("hsms/<str:hsm_id>/resource/replicas/<str:region>/remove/",
         views.HsmReplicaRemoveView.as_view(), name="hsm-replica-remove"),
]
